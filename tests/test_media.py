"""Decoding at the edge: containers, rates, channels, and clear errors for bad media."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mmserve.errors import InvalidInput, PayloadTooLarge
from mmserve.limits import Limits
from mmserve.media import decode_audio, decode_data_url, decode_image, encode_png, encode_wav
from tests.helpers import SPEECH_EN, convert_audio


@pytest.mark.parametrize("fmt,rate,stereo", [("WAV", 22050, False), ("FLAC", 44100, True),
                                              ("OGG", 48000, False), ("MP3", 16000, True)])
def test_decode_audio_resamples_to_16k_mono(fmt, rate, stereo):
    audio = decode_audio(convert_audio(SPEECH_EN, fmt, rate=rate, stereo=stereo))
    assert audio.sample_rate == 16000
    assert audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert audio.duration_s == pytest.approx(sf.info(SPEECH_EN).duration, abs=0.1)
    assert np.abs(audio.samples).max() > 0.01


@pytest.mark.parametrize("data", [b"", b"RIFF0000WAVEjunk", b"\x00" * 1000])
def test_undecodable_audio_is_invalid_input(data):
    with pytest.raises(InvalidInput) as err:
        decode_audio(data, field="file")
    assert err.value.field == "file" and err.value.status_code == 400


def test_audio_over_the_limit_is_413():
    with pytest.raises(PayloadTooLarge):
        decode_audio(SPEECH_EN.read_bytes(), max_seconds=1.0)


def test_wav_round_trip():
    tone = np.sin(np.linspace(0, 200, 24000)).astype(np.float32) * 0.5
    samples, rate = sf.read(io.BytesIO(encode_wav(tone, 24000)), dtype="float32")
    assert rate == 24000 and samples.shape == tone.shape


def test_image_round_trip_and_errors():
    png = encode_png(Image.new("RGBA", (40, 30), (255, 0, 0, 128)))
    image = decode_image(png)
    assert image.size == (40, 30) and image.mode == "RGB"
    with pytest.raises(InvalidInput):
        decode_image(b"not an image", field="image")
    with pytest.raises(InvalidInput):
        decode_image(b"", field="image")
    with pytest.raises(PayloadTooLarge):
        decode_image(png, max_pixels=100)


def test_data_urls():
    assert decode_data_url("data:image/png;base64,aGVsbG8=", field="url") == b"hello"
    with pytest.raises(InvalidInput):
        decode_data_url("data:image/png;base64,@@@", field="url")


def test_limits_name_the_field():
    limits = Limits(max_prompt_chars=10, max_image_side=512)
    with pytest.raises(InvalidInput, match="prompt"):
        limits.check_prompt("   ")
    with pytest.raises(InvalidInput) as err:
        limits.check_prompt("x" * 11, "input")
    assert err.value.field == "input"
    with pytest.raises(InvalidInput) as err:
        limits.check_image_options(width=1024, height=256, steps=None, guidance=None, n=1)
    assert err.value.field == "width"
    with pytest.raises(PayloadTooLarge):
        limits.check_upload_size(limits.max_upload_bytes + 1, "file")

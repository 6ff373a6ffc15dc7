"""PCM16 in and out of a realtime session, and the chunk-by-chunk resampling between the client's
rate and the models' (gateway/realtime/audio.py): no torch, no Ray."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import soxr

from gateway.realtime.audio import Resampler, decode_pcm16, encode_pcm16
from mmserve.errors import InvalidInput


def tone(rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("in_rate, out_rate", [(24000, 16000), (16000, 24000), (44100, 24000)])
def test_chunked_resampling_matches_resampling_the_whole(in_rate, out_rate):
    """40 ms appends resampled one by one join into what resampling the whole gives: the filter's
    state crosses the seams (resampling each chunk on its own puts a transient at every seam)."""
    audio = tone(in_rate)
    step = in_rate * 40 // 1000
    resample = Resampler(in_rate, out_rate)
    pieces = [resample(audio[i:i + step]) for i in range(0, len(audio), step)]
    joined = np.concatenate([*pieces, resample(np.empty(0, np.float32), last=True)])
    whole = soxr.resample(audio, in_rate, out_rate)
    assert abs(len(joined) - len(whole)) <= 1
    n = min(len(joined), len(whole))
    assert np.max(np.abs(joined[:n] - whole[:n])) < 1e-3


def test_the_same_rate_passes_samples_through():
    audio = tone(24000)
    assert np.array_equal(Resampler(24000, 24000)(audio), audio)


def test_pcm16_round_trip():
    audio = tone(24000, 0.1)
    back = decode_pcm16(encode_pcm16(audio))
    assert back.dtype == np.float32 and len(back) == len(audio)
    assert np.max(np.abs(back - audio)) <= 1 / 32768  # half a step of rounding, plus 32767 out vs 32768 in


def test_pcm16_clips_instead_of_wrapping():
    back = decode_pcm16(encode_pcm16(np.array([1.5, -1.5], np.float32)))
    assert back[0] > 0.99 and back[1] < -0.99


@pytest.mark.parametrize("payload, message", [
    ("not base64!", "not valid base64"),
    (base64.b64encode(b"\x00\x01\x02").decode(), "even number of bytes"),
])
def test_bad_audio_names_the_field(payload, message):
    with pytest.raises(InvalidInput, match=message) as caught:
        decode_pcm16(payload, field="audio")
    assert caught.value.field == "audio"

"""Media at the edges: bytes in (WAV/FLAC/OGG/MP3, PNG/JPEG), arrays inside.

Decoding and validation happen once, here, and raise InvalidInput / PayloadTooLarge naming the
field, so a malformed upload is a 4xx and never reaches a model.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import soundfile as sf
import soxr
from PIL import Image, UnidentifiedImageError

from mmserve.errors import InvalidInput, PayloadTooLarge
from mmserve.protocol.asr import MIN_AUDIO_S, check_long_enough
from mmserve.protocol.audio import Audio


def decode_audio(
    data: bytes,
    *,
    target_rate: int = 16000,
    max_seconds: float | None = None,
    min_seconds: float = MIN_AUDIO_S,
    field: str = "file",
) -> Audio:
    """Decode any container libsndfile reads (WAV, FLAC, OGG/Vorbis/Opus, MP3), downmix, resample.
    Shorter than `min_seconds` is refused as OpenAI refuses it: a cut-off upload is an error, not ""."""
    if not data:
        raise InvalidInput("audio is empty", field=field)
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types for garbage input
        raise InvalidInput(f"audio could not be decoded: {exc}", field=field) from None
    if samples.shape[0] == 0:
        raise InvalidInput("audio has no samples", field=field)
    duration = samples.shape[0] / float(rate)
    check_long_enough(duration, field, min_seconds)
    if max_seconds is not None and duration > max_seconds:
        raise PayloadTooLarge(f"audio is {duration:.1f} s long; the limit is {max_seconds:g} s", field=field)
    mono = samples.mean(axis=1)
    if rate != target_rate:
        # libsoxr's "HQ" polyphase filter: no torch in the gateway, and about twice as fast as
        # torchaudio's default sinc resampler on speech (which it matches to within 1%).
        mono = soxr.resample(mono, rate, target_rate, quality="HQ")
    return Audio(samples=np.ascontiguousarray(mono, dtype=np.float32), sample_rate=target_rate)


def pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as 16-bit little-endian PCM (raw audio for streams and realtime),
    rounded to the nearest step (a cast alone truncates toward zero: a bias at low levels)."""
    return np.rint(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes."""
    buf = io.BytesIO()
    sf.write(buf, np.asarray(samples, dtype=np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def decode_image(data: bytes, *, max_pixels: int | None = None, field: str = "image") -> Image.Image:
    """Decode PNG/JPEG/WebP/... bytes into an RGB image, rejecting empty or oversized ones."""
    if not data:
        raise InvalidInput("image is empty", field=field)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidInput(f"image could not be decoded: {exc}", field=field) from None
    width, height = image.size
    if width == 0 or height == 0:
        raise InvalidInput("image has zero size", field=field)
    if max_pixels is not None and width * height > max_pixels:
        raise PayloadTooLarge(f"image is {width}x{height}; the limit is {max_pixels} pixels", field=field)
    return image.convert("RGB")


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_data_url(url: str, *, field: str) -> bytes:
    """Bytes from a `data:<mime>;base64,<payload>` URL or a bare base64 string."""
    payload = url.split(",", 1)[1] if url.startswith("data:") else url
    try:
        return base64.b64decode(payload, validate=True)
    except Exception:
        raise InvalidInput("not a valid base64 data URL", field=field) from None

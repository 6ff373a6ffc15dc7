"""Small helpers for the HTTP tests: spoken audio in several containers, PNG checks."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from bench.wait import wait_until as bench_wait_until

DATA = Path(__file__).parent / "data"
SPEECH_ZH = DATA / "speech_zh.wav"  # espeak-ng -v cmn "请画一只坐在海边的小猫", 22.05 kHz mono
SPEECH_EN = DATA / "speech_en.wav"  # espeak-ng -v en "Draw a small cat sitting by the sea at sunset."


def convert_audio(path: Path, fmt: str, *, rate: int | None = None, stereo: bool = False) -> bytes:
    """The same speech re-encoded: another container, rate or channel count."""
    samples, sr = sf.read(path, dtype="float32")
    if rate and rate != sr:
        idx = np.linspace(0, len(samples) - 1, int(len(samples) * rate / sr))
        samples, sr = np.interp(idx, np.arange(len(samples)), samples).astype(np.float32), rate
    if stereo:
        samples = np.stack([samples, samples * 0.5], axis=1)
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format=fmt)
    return buf.getvalue()


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV")
    return buf.getvalue()


def decode_b64_png(b64: str) -> Image.Image:
    data = base64.b64decode(b64)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def read_then_leave(stream, items: int) -> list:
    """Take `items` items of an async stream, then close it as Serve does when the HTTP client disconnects."""
    got = []
    async for item in stream:
        got.append(item)
        if len(got) == items:
            break
    await stream.aclose()
    return got


# What every speech recognizer refuses, and the field it names (mmserve/runners/speech_input.py).
BAD_SPEECH_INPUTS = [
    ({"samples": np.zeros(0, np.float32)}, "samples"),
    ({"samples": np.zeros(1599, np.float32)}, "samples"),  # under 0.1 s
    ({"samples": np.zeros((2, 16000), np.float32)}, "samples"),
    ({"samples": np.full(16000, np.nan, np.float32)}, "samples"),
    ({"samples": np.zeros(16000, np.int16)}, "samples"),
    ({"sample_rate": 8000}, "sample_rate"),
    ({"hotwords": ["two words"]}, "hotwords"),
    ({"hotwords": [""]}, "hotwords"),
    ({"hotwords": "not-a-list"}, "hotwords"),
    ({"hotwords": ["w"] * 101}, "hotwords"),
]


def wait_until(predicate, timeout: float, what, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy and return that; fail (AssertionError) naming
    `what` (a string, or a callable giving one then) at the deadline: the harness's one wait helper."""
    return bench_wait_until(predicate, timeout, what, interval, error=AssertionError)


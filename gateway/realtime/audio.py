"""PCM16 in and out of a realtime session, and the resampling between the client's rate and the models'."""

from __future__ import annotations

import base64
import binascii

import numpy as np
import soxr

from mmserve.errors import InvalidInput
from mmserve.media import pcm16


def decode_pcm16(b64: str, *, field: str = "audio") -> np.ndarray:
    """Base64 PCM16 little-endian mono -> float32 in [-1, 1]."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("audio is not valid base64", field=field) from None
    if len(raw) % 2:
        raise InvalidInput("PCM16 audio must have an even number of bytes", field=field)
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def encode_pcm16(samples: np.ndarray) -> str:
    return base64.b64encode(pcm16(samples)).decode("ascii")


class Resampler:
    """Chunk-by-chunk resampling that keeps its filter state across chunks (no clicks at the seams)."""

    def __init__(self, in_rate: int, out_rate: int):
        self.in_rate, self.out_rate = in_rate, out_rate
        self._stream = None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32")

    def __call__(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples.astype(np.float32, copy=False)
        return self._stream.resample_chunk(samples.astype(np.float32, copy=False), last=last)

"""What every speech recognizer checks of a request the same way: the audio and the hotword list.

Checked before any model work (and outside the model lock), so a bad request fails alone and fast
with an InvalidInput that names its field.
"""

from __future__ import annotations

import re

import numpy as np

from mmserve.errors import InvalidInput
from mmserve.protocol.asr import MIN_AUDIO_S, check_long_enough

SAMPLE_RATE = 16000  # what the gateway decodes speech to, and what Paraformer and Whisper take
MAX_HOTWORD_CHARS = 32


def checked_audio(samples, sample_rate: int, *, field: str = "samples", min_seconds: float = MIN_AUDIO_S) -> np.ndarray:
    """Contiguous float32 mono audio at SAMPLE_RATE, at least `min_seconds` long; InvalidInput names `field`."""
    if sample_rate != SAMPLE_RATE:
        raise InvalidInput(f"sample_rate must be {SAMPLE_RATE}, got {sample_rate}", field="sample_rate")
    if not isinstance(samples, np.ndarray) or samples.ndim != 1 or not np.issubdtype(samples.dtype, np.floating):
        raise InvalidInput(f"{field} must be a 1-D float array of mono audio", field=field)
    if samples.size == 0:
        raise InvalidInput("audio is empty", field=field)
    check_long_enough(samples.size / SAMPLE_RATE, field, min_seconds)
    if not np.isfinite(samples).all():
        raise InvalidInput("audio contains NaN or infinite samples", field=field)
    return np.ascontiguousarray(samples, dtype=np.float32)


def checked_hotwords(hotwords, max_hotwords: int, *, forbidden: str = r"\s", rule: str = "no spaces") -> list[str] | None:
    """The stripped words of a hotword list (None when empty): at most `max_hotwords` single words of
    at most MAX_HOTWORD_CHARS characters, none matching the `forbidden` pattern."""
    if not hotwords:
        return None
    if not isinstance(hotwords, (list, tuple)):
        raise InvalidInput("hotwords must be a list of strings", field="hotwords")
    if len(hotwords) > max_hotwords:
        raise InvalidInput(f"at most {max_hotwords} hotwords are accepted", field="hotwords")
    words = []
    for word in hotwords:
        if not isinstance(word, str) or not word.strip():
            raise InvalidInput("hotwords must be non-empty strings", field="hotwords")
        word = word.strip()
        if len(word) > MAX_HOTWORD_CHARS or re.search(forbidden, word):
            raise InvalidInput(
                f"hotword {word!r} must be one word of at most {MAX_HOTWORD_CHARS} characters with {rule}",
                field="hotwords",
            )
        words.append(word)
    return words

"""What speech recognition returns (built by the ASR runner, read by routes and flows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from mmserve.errors import InvalidInput, MMServeError

MIN_AUDIO_S = 0.1  # shortest audio any ASR family or flow transcribes (OpenAI's minimum, and its message)


def check_long_enough(seconds: float, field: str, min_seconds: float = MIN_AUDIO_S) -> None:
    """InvalidInput naming `field` for audio shorter than `min_seconds`, worded as OpenAI words it."""
    if seconds < min_seconds:
        raise InvalidInput(f"audio is {seconds:.3f} s long; the minimum audio length is {min_seconds:g} seconds",
                           field=field)


def prompt_hotwords(prompt: str | None) -> list[str] | None:
    """An OpenAI `prompt` as hotwords (Paraformer's): its words, separated by commas or spaces; None if none."""
    return [w for w in (prompt or "").replace(",", " ").split() if w] or None


@dataclass
class TranscriptSegment:
    """A stretch of the transcript as the recognizer itself cut it (Whisper's segments)."""

    start_s: float
    end_s: float
    text: str


@dataclass
class TranscriptWord:
    word: str
    start_s: float
    end_s: float
    probability: float | None = None


@dataclass
class Transcript:
    text: str
    timestamps: list[tuple[int, int]] | None  # per-token (start, end) ms in the audio; None if not given
    duration_s: float
    # Filled by runners whose model gives them (faster-whisper); None: the routes derive segments
    # and words from text and timestamps (Paraformer, see mmserve/subtitles.py).
    segments: list[TranscriptSegment] | None = None
    words: list[TranscriptWord] | None = None
    language: str | None = None  # the language the recognizer used or detected, when it says


@dataclass
class VadStep:
    """What one chunk of a live stream did to the ASR model's streaming VAD.

    `state` is opaque (the replica's pickled VAD cache; the gateway never unpickles it): send it back
    with the next chunk of the same stream, to any replica of the same model. `events` are the turn
    edges found so far, in order: ("start" | "stop", ms from the start of the stream).
    """

    state: bytes
    events: list[tuple[str, int]]


@dataclass
class StreamStep:
    """What one chunk of a live turn did on a streaming recognizer (two-pass's first pass).

    `text` is the turn's partial transcript so far (not just this chunk's); `chunks` is how many calls
    the turn's stream has taken, the `seq` of its next call.
    """

    text: str
    chunks: int


class StreamLost(MMServeError):
    """The replica does not hold this turn's stream at the step asked for (another replica took the
    turn's earlier chunks, or this one restarted or dropped it): send the turn's audio so far again
    with seq 0, and the stream is rebuilt here."""

    status_code = 409
    code = "stream_lost"


class AsrRunner(Protocol):
    """What the ASR deployment calls on a runner of any ASR family."""

    def warmup(self) -> None: ...

    def check(self, samples: Any, sample_rate: int, hotwords: list[str] | None) -> tuple[Any, Any]:
        """Validate one request before it queues: (16 kHz mono float32 samples, the family's own
        prepared option, e.g. Paraformer's hotword string), handed to `run` as they are."""

    def run(self, wav: Any, prepared: Any) -> Transcript: ...

    def detect_speech(self, state: bytes | None, samples: Any, *, silence_ms: int, final: bool) -> VadStep: ...

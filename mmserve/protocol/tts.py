"""One text-to-speech request (built by the gateway and flows, validated and batched by the TTS replica)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from pydantic import BaseModel

# The built-in voice names of OpenAI's speech API and Realtime API (openai 3.63's types); TTS families map
# each onto one of their own speakers, so clients that only know these names work.
OPENAI_VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage",
                 "shimmer", "verse")


class SpeechRequest(BaseModel):
    """One text (Chinese and/or English) to speak with at most one of voice/speaker_seed/speaker_embedding."""

    text: str
    voice: str | None = None
    speaker_seed: int | None = None
    speaker_embedding: str | None = None  # ChatTTS's encoded spk_emb string (Chat.sample_random_speaker)
    speed: int = 5  # ChatTTS [speed_N] prompt, 0..9
    seed: int | None = None  # sampling seed; None = nondeterministic
    skip_refine_text: bool = True  # refinement is a second GPT pass that adds [uv_break]/[laugh] tags
    instructions: str | None = None  # how to speak (OpenAI's field); each family says what it honours


class TtsRunner(Protocol):
    """What the TTS deployment calls: validate, synthesize a batch (one float clip per request), or
    stream one request chunk by chunk, all at `sample_rate`."""

    progress: Any
    sample_rate: int

    def warmup(self) -> None: ...

    def validate(self, request: SpeechRequest) -> None: ...

    def synthesize(self, requests: list[SpeechRequest], cancels: list[Any] | None = None) -> list[Any]: ...

    def stream(self, request: SpeechRequest) -> Iterator[Any]: ...

"""One text-to-speech request (built by the gateway and flows, validated and batched by the TTS replica)."""

from __future__ import annotations

from pydantic import BaseModel


class SpeechRequest(BaseModel):
    """One text (Chinese and/or English) to speak with at most one of voice/speaker_seed/speaker_embedding."""

    text: str
    voice: str | None = None
    speaker_seed: int | None = None
    speaker_embedding: str | None = None  # ChatTTS's encoded spk_emb string (Chat.sample_random_speaker)
    speed: int = 5  # ChatTTS [speed_N] prompt, 0..9
    seed: int | None = None  # sampling seed; None = nondeterministic
    skip_refine_text: bool = True  # refinement is a second GPT pass that adds [uv_break]/[laugh] tags

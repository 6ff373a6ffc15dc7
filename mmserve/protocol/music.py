"""One text-to-music request (built by the gateway, validated by the music replica)."""

from __future__ import annotations

from pydantic import BaseModel


class MusicRequest(BaseModel):
    """One prompt, one clip of duration_s seconds."""

    prompt: str
    negative_prompt: str = ""
    duration_s: float = 10.0
    steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None

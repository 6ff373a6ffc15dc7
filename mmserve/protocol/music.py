"""One text-to-music request (built by the gateway, validated by the music replica)."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel


class MusicRequest(BaseModel):
    """One prompt, one clip of duration_s seconds."""

    prompt: str
    negative_prompt: str = ""
    duration_s: float = 10.0
    steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None


class MusicRunner(Protocol):
    """What the music deployment calls: validate, then one clip (channels x samples) at `sample_rate`."""

    progress: Any
    sample_rate: int

    def warmup(self) -> None: ...

    def validate(self, req: MusicRequest) -> None: ...

    def generate(self, req: MusicRequest, cancel: Any = None) -> Any: ...

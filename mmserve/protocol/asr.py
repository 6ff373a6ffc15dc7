"""What speech recognition returns (built by the ASR runner, read by routes and flows)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Transcript:
    text: str
    timestamps: list[tuple[int, int]] | None  # per-token (start, end) ms in the audio; None if not given
    duration_s: float

"""Decoded audio and its sample rate, travelling together.

The gateway decodes uploads into it and the speech-synthesis replica returns it, so no stage
assumes a model's rate: whoever reads the samples reads the rate beside them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Audio:
    """Mono float32 samples in [-1, 1] and their rate."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate)

"""A transformers stopping criterion for cancellation, shared by the generating runners.

``generate()`` only calls its stopping criteria, so a plain callable keeps transformers out of
module import.
"""

from __future__ import annotations

import threading

import torch


class StopWhenSet:
    """Ends generation after the current token once ``event`` is set (the stream's consumer has gone)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)

"""A transformers stopping criterion for cancellation, shared by the generating runners.

``generate()`` only calls its stopping criteria, so a plain callable keeps transformers out of
module import.
"""

from __future__ import annotations

from mmserve.lazy import lazy
from mmserve.runners.progress import Progress

torch = lazy("torch")  # imported on first use: declaring the family costs no torch


class StopWhenSet:
    """Ends generation after the current token once ``event`` is set (the stream's consumer has gone);
    ``generate()`` calls it once per generated token, so it also counts tokens into ``progress``."""

    def __init__(self, event, progress: Progress | None = None):
        self.event, self.progress = event, progress  # event: anything with is_set() (threading.Event, Cancel)

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        if self.progress is not None:
            self.progress.step()
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)

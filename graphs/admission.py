"""Refusing work the gateway already knows it cannot place, before reading the request's body.

When a model deployment refuses a call because its bounded queue is full (Serve's
BackPressureError), this gateway replica remembers it for a moment. A request whose route can
only reach saturated models is then answered 503 from its path alone: no body is read, no upload
decoded, so refusals stay fast however many arrive. The mark clears when this replica sees a call
to that model finish (a slot was freed) or after `hold_s` (calls from other gateway replicas free
slots too), so the next request probes the queue again.
"""

from __future__ import annotations

import time

from mmserve.errors import Overloaded

# The tasks whose models a route calls first; a route not listed is never refused here.
ROUTE_TASKS = {
    "/v1/audio/transcriptions": ("asr",),
    "/v1/audio/speech": ("tts",),
    "/v1/images/generations": ("image",),
    "/v1/audio/music": ("music",),
    "/v1/chat/completions": ("llm", "vlm"),
    "/v1/pipelines/speech-to-image": ("asr",),
    "/v1/pipelines/voice-chat": ("asr",),
    "/v1/pipelines/spoken-question": ("asr",),
    "/v1/pipelines/describe-aloud": ("vlm",),
}


class Saturation:
    """Deployments (by name) that refused a call and have not been seen to free a slot since."""

    def __init__(self, hold_s: float = 1.0):
        self.hold_s = hold_s
        self._until: dict[str, float] = {}

    def refused(self, deployment: str) -> None:
        self._until[deployment] = time.monotonic() + self.hold_s

    def finished(self, deployment: str) -> None:
        self._until.pop(deployment, None)

    def full(self, deployment: str) -> bool:
        until = self._until.get(deployment)
        if until is not None and time.monotonic() >= until:
            del self._until[deployment]
            return False
        return until is not None


saturation = Saturation()


def refusal(path: str, models: dict) -> Overloaded | None:
    """A 503 for a request to `path` when every model its route could call (`models`: name ->
    ServedModel of the gateway) is saturated; None when any may take it."""
    tasks = ROUTE_TASKS.get(path)
    if tasks is None:
        return None
    names = [name for name, model in models.items() if model.task in tasks]
    if names and all(saturation.full(name) for name in names):
        return Overloaded(f"every model this route can use is at its queue limit ({', '.join(names)}); retry later")
    return None

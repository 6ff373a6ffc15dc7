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

from mmserve.config.flows import FLOWS
from mmserve.errors import Overloaded
from mmserve.tasks import TASKS


def route_tasks() -> dict[str, tuple[str, ...]]:
    """HTTP path -> the tasks whose models a request to it calls first, from the task and flow
    declarations; a route not listed is never refused here."""
    routes: dict[str, tuple[str, ...]] = {}
    for task in TASKS.values():
        for path in task.routes:
            routes[path] = (*routes.get(path, ()), task.name)
    for flow in FLOWS.values():
        for path, first in flow.routes.items():
            routes[path] = (*routes.get(path, ()), first)
    return routes


ROUTE_TASKS = route_tasks()


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

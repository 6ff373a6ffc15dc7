"""Refusing work the gateway already knows it cannot place, before reading the request's body.

When a model deployment refuses a call because its bounded queue is full (Serve's
BackPressureError), this gateway replica marks it saturated for a moment (graphs.stages.Saturation).
A request whose route can only reach saturated models is then answered 503 from its path alone: no
body is read, no upload decoded, so refusals stay fast however many arrive.
"""

from __future__ import annotations

from graphs.stages import Saturation
from mmserve.config.flows import FLOW_PREFIX, FLOWS, LEGACY_FLOW_PREFIX
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
            for alias in (path, path.replace(FLOW_PREFIX, LEGACY_FLOW_PREFIX, 1)):
                routes[alias] = (*routes.get(alias, ()), first)
    return routes


ROUTE_TASKS = route_tasks()


def refusal(path: str, models: dict, saturation: Saturation) -> Overloaded | None:
    """A 503 for a request to `path` when every model its route could call (`models`: name ->
    ServedModel of the gateway) is saturated (`saturation`: this replica's marks, see
    graphs.stages.Saturation); None when any may take it."""
    tasks = ROUTE_TASKS.get(path)
    if tasks is None:
        return None
    names = [name for name, model in models.items() if model.task in tasks]
    if names and all(saturation.full(name) for name in names):
        return Overloaded(f"every model this route can use is at its queue limit ({', '.join(names)}); retry later")
    return None

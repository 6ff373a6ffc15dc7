"""What the gateway's routes share: limits, the served models by task, and the flows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ray.serve.handle import DeploymentHandle

from mmserve.errors import MMServeError

TASKS = ("asr", "image", "llm", "tts", "vlm", "music")


class ModelNotFound(MMServeError):
    status_code = 404
    code = "model_not_found"


@dataclass
class ServedModel:
    task: str
    name: str
    handle: DeploymentHandle
    always_on: bool = True  # False: may scale to zero, so readiness does not wait for it


def waiting_for(models: dict[str, ServedModel], running: dict[str, int]) -> list[str]:
    """Always-on models with no RUNNING replica yet (a replica runs once loaded and warmed up)."""
    return sorted(task for task, m in models.items() if m.always_on and running.get(task, 0) < 1)


@dataclass
class Services:
    limits: Any
    image_defaults: Any
    api_keys: list[str] = field(default_factory=list)
    max_body_bytes: int | None = None
    models: dict[str, ServedModel] = field(default_factory=dict)  # by task
    flows: dict[str, Any] = field(default_factory=dict)

    def model(self, task: str, requested: str | None = None, *, field_name: str = "model") -> ServedModel:
        """The deployment serving `task`; a `model` naming something else is a 404."""
        served = self.models.get(task)
        if served is None:
            raise ModelNotFound(f"no {task} model is served by this deployment", field=field_name)
        if requested and requested != served.name:
            raise ModelNotFound(f"model {requested!r} is not served; the {task} model is {served.name!r}",
                                field=field_name)
        return served

    def task_of(self, name: str) -> str | None:
        return next((m.task for m in self.models.values() if m.name == name), None)

    def flow(self, name: str) -> Any:
        flow = self.flows.get(name)
        if flow is None:
            raise ModelNotFound(f"the {name} flow needs models this deployment does not serve")
        return flow


_installed: Services | None = None


def install(svc: Services) -> None:
    """Called once by the gateway replica. A module global, not `app.state`: Serve serves a copy
    of the FastAPI app, so state set on the module's `app` object would not reach the routes."""
    global _installed
    _installed = svc


def services() -> Services:
    """The gateway's services (a FastAPI dependency)."""
    if _installed is None:
        raise RuntimeError("the gateway has not installed its services yet")
    return _installed

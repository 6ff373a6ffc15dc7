"""What the gateway's routes share: limits, the served models by name (the model directory), the flows
and how stages are called."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ray.serve.handle import DeploymentHandle

from graphs.stages import Stages
from mmserve.config.flows import FLOWS
from mmserve.errors import MMServeError
from mmserve.lazy import import_attr

# OpenAI's own model ids, by task (openai 3.63's AudioModel, SpeechModel and realtime transcription models).
# Clients with these hard-coded as defaults (the Agents SDK, Pipecat) get the task's default model.
OPENAI_MODEL_IDS = {
    "asr": {"whisper-1", "gpt-transcribe", "gpt-live-transcribe", "gpt-4o-transcribe", "gpt-4o-mini-transcribe",
            "gpt-4o-mini-transcribe-2025-12-15", "gpt-4o-transcribe-diarize", "gpt-realtime-whisper"},
    "tts": {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15"},
}


class ModelNotFound(MMServeError):
    status_code = 404
    code = "model_not_found"


@dataclass
class ServedModel:
    name: str  # OpenAI model id and Serve deployment name
    task: str
    family: str
    handle: DeploymentHandle
    always_on: bool = True  # False: may scale to zero, so readiness does not wait for it
    default: bool = False  # the task's model when a request names none
    adapters: tuple[str, ...] = ()  # LoRA adapters served on this model, requested by their own names
    base: str | None = None  # set on an adapter: the model (deployment) that serves it
    stream_chunk_samples: int | None = None  # a streaming ASR model's stride (16 kHz samples); None: not one

    def adapter_routes(self) -> dict[str, "ServedModel"]:
        """One entry per adapter: this model's deployment, called with the adapter as Serve's multiplexed
        model id, so Serve sends it to replicas that hold the adapter already (handles made once, here)."""
        return {name: ServedModel(name=name, task=self.task, family=self.family, always_on=self.always_on,
                                  handle=self.handle.options(multiplexed_model_id=name), base=self.name)
                for name in self.adapters}


def waiting_for(models: dict[str, ServedModel], running: dict[str, int]) -> list[str]:
    """Always-on models with no RUNNING replica yet (a replica runs once loaded and warmed up)."""
    return sorted(name for name, m in models.items() if m.always_on and running.get(name, 0) < 1)


@dataclass
class Services:
    limits: Any
    image_defaults: Any
    api_keys: list[str] = field(default_factory=list)
    max_body_bytes: int | None = None
    models: dict[str, ServedModel] = field(default_factory=dict)  # by name
    flows: dict[str, Any] = field(default_factory=dict)  # flow name -> its args, stage models resolved
    adapters: dict[str, ServedModel] = field(default_factory=dict)  # LoRA adapter name -> its route
    realtime: Any = None  # the gateway's RealtimeArgs
    stages: Stages = field(default_factory=Stages)  # how routes and flows call stages: deadlines, saturation

    def __post_init__(self) -> None:
        for served in self.models.values():
            self.adapters.update(served.adapter_routes())

    def names_for(self, task: str) -> list[str]:
        return [m.name for m in [*self.models.values(), *self.adapters.values()] if m.task == task]

    def model(self, task: str, requested: str | None = None, *, field_name: str = "model") -> ServedModel:
        """The `task` model named `requested`, or the task's default (also for OpenAI's own id of the task's
        models, unless a served model has that name); anything else is a 404 listing the task's names."""
        if requested in OPENAI_MODEL_IDS.get(task, ()) and requested not in self.models:
            requested = None
        if requested:
            served = self.models.get(requested) or self.adapters.get(requested)
            if served is not None and served.task == task:
                return served
            names = self.names_for(task)
            served_list = f"the {task} models served are: {', '.join(names)}" if names else f"no {task} model is served"
            raise ModelNotFound(f"model {requested!r} is not a served {task} model; {served_list}", field=field_name)
        default = next((m for m in self.models.values() if m.task == task and m.default), None)
        if default is None:
            raise ModelNotFound(f"no {task} model is served by this deployment", field=field_name)
        return default

    def task_of(self, name: str) -> str | None:
        served = self.models.get(name) or self.adapters.get(name)
        return served.task if served is not None else None

    def flow(self, name: str, **requested: str | None) -> Any:
        """The flow, its stages calling the models a request picked (`requested`: stage -> model name),
        else the ones its config names, else each task's default (an optional stage with none: skipped)."""
        args = self.flows.get(name)
        if args is None:
            raise ModelNotFound(f"the {name} flow needs models this deployment does not serve")
        kind = FLOWS[name]
        handles = {}
        for stage in kind.stages:
            chosen = requested.get(stage) or getattr(args, stage)
            optional_and_absent = stage in kind.optional and chosen is None
            handles[stage] = None if optional_and_absent else self.model(
                stage, chosen, field_name=f"{stage}_model").handle
        return import_attr(kind.runs)(args, **handles, stages=self.stages)


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

"""App builder: `serve run serve_config.yaml` validates `args:` into AppArgs and calls build_app.

The config is a model catalogue (`models:`: any number of named models per task, each its own
deployment), the flows that chain them (`flows:`), the gateway and the cluster it is planned for.
Moving from tiny CPU models to real weights on a GPU cluster, or adding a model, is a YAML change.
A task with no model is simply not deployed; its routes answer 404 and flows that need it are off.
"""
# No `from __future__ import annotations`: Ray reads build_app's annotation to validate `args`.

import logging
import time
from pathlib import Path

import yaml
from pydantic import Field, model_validator
from ray.serve import Application

from deployments.asr import SpeechRecognition
from deployments.image import ImageGeneration
from deployments.llm import ChatLLM
from deployments.music import MusicGeneration
from deployments.tts import SpeechSynthesis
from deployments.vlm import VisionLanguage
from graphs.flows import FLOW_KINDS, FlowsArgs
from graphs.gateway import Gateway, GatewayArgs
from mmserve.catalog import ModelArgs
from mmserve.config import Strict
from mmserve.plan import ClusterArgs, check_app_args

log = logging.getLogger(__name__)

TASK_DEPLOYMENTS = {"asr": SpeechRecognition, "image": ImageGeneration, "llm": ChatLLM, "tts": SpeechSynthesis,
                    "vlm": VisionLanguage, "music": MusicGeneration}


class AppArgs(Strict):
    models: list[ModelArgs] = Field(default_factory=list, description="the model catalogue; names are unique")
    flows: FlowsArgs = Field(default_factory=FlowsArgs)
    gateway: GatewayArgs = Field(default_factory=GatewayArgs)
    cluster: ClusterArgs | None = Field(
        None, description="the GPUs this config is planned for; build_app checks memory and scheduling against "
        "them (None: no check)")

    @model_validator(mode="after")
    def _catalogue_is_consistent(self) -> "AppArgs":
        seen: set[str] = set()
        for model in self.models:
            if model.name in seen:
                raise ValueError(f"models: the name {model.name!r} is used twice; names must be unique")
            seen.add(model.name)
        for model in self.models:  # a LoRA adapter is requested by its name like a model: one namespace
            for adapter in model.adapters:
                if adapter in seen:
                    raise ValueError(f"models: {model.name}: adapter name {adapter!r} is already used by a model "
                                     "or another adapter; model and adapter names must be unique")
                seen.add(adapter)
        for task in {m.task for m in self.models}:
            marked = [m.name for m in self.models if m.task == task and m.default]
            if len(marked) > 1:
                raise ValueError(f"models: {task} has two defaults ({', '.join(marked)}); mark one `default: true`")
        for name, flow in self.flows.named().items():
            self._check_flow(name, flow)
        return self

    def _check_flow(self, name: str, flow: Strict) -> None:
        kind = FLOW_KINDS[name]
        for stage in kind.stages:
            chosen = getattr(flow, stage)
            if chosen is not None:
                model = self.model(chosen) or self.adapter_base(chosen)  # a LoRA adapter runs on its base
                if model is None:
                    raise ValueError(f"flows.{name}.{stage}: model {chosen!r} is not in models:")
                if model.task != stage:
                    raise ValueError(f"flows.{name}.{stage}: model {chosen!r} is a {model.task} model, not {stage}")
            elif stage in kind.required and self.default_model(stage) is None:
                raise ValueError(f"flows.{name}: needs a {stage} model and models: has none")

    def model(self, name: str) -> ModelArgs | None:
        return next((m for m in self.models if m.name == name), None)

    def adapter_base(self, name: str) -> ModelArgs | None:
        """The model that serves the LoRA adapter `name`, if one does."""
        return next((m for m in self.models if name in m.adapters), None)

    def default_model(self, task: str) -> ModelArgs | None:
        """The model marked `default: true` for the task, else the task's first."""
        of_task = [m for m in self.models if m.task == task]
        return next((m for m in of_task if m.default), of_task[0] if of_task else None)

    def served_flows(self) -> dict[str, Strict]:
        """The flows to serve, each stage's model resolved (an optional stage without one: None).
        A flow the YAML does not name runs when every task it needs has a model."""
        flows = {}
        for name, kind in FLOW_KINDS.items():
            args = self.flows.args_of(name)
            chosen = {stage: getattr(args, stage) or getattr(self.default_model(stage), "name", None)
                      for stage in kind.stages}
            if all(chosen[stage] for stage in kind.required):
                flows[name] = args.model_copy(update=chosen)
        return flows


def deploy(model: ModelArgs) -> Application:
    """The one builder of every model deployment: its task's class, named after the model."""
    return TASK_DEPLOYMENTS[model.task].options(name=model.name, **model.deployment.serve_options()).bind(model)


def build_app(args: AppArgs) -> Application:
    check_gpu_plan(args)
    defaults = {args.default_model(m.task).name for m in args.models}
    models = [{"name": m.name, "task": m.task, "family": m.family.name, "handle": deploy(m),
               "always_on": m.deployment.always_on, "default": m.name in defaults, "adapters": tuple(m.adapters)}
              for m in args.models]
    return Gateway.options(**args.gateway.deployment.serve_options()).bind(args.gateway, models, args.served_flows())


def check_gpu_plan(args: AppArgs) -> None:
    """The capacity planner's checks at `serve run`: a model that cannot fit its share, or a minimum
    replica set that cannot be scheduled, stops the build here instead of OOMing replicas later."""
    if args.cluster is None or not any(model.deployment.num_gpus > 0 for model in args.models):
        return
    started = time.perf_counter()
    check_app_args(args, args.cluster, warn=lambda message: log.warning("GPU plan: %s", message))
    log.info("GPU plan checked in %.1f s", time.perf_counter() - started)


def load_app_args(config_path: str | Path, app_name: str = "mmserve") -> AppArgs:
    """The validated args of one application in a Serve config file (tests, scripts, benchmarks)."""
    config = yaml.safe_load(Path(config_path).read_text())
    for application in config["applications"]:
        if application["name"] == app_name:
            return AppArgs.model_validate(application["args"])
    raise KeyError(f"no application named {app_name!r} in {config_path}")

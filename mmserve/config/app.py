"""The app config: what `serve run` validates from a Serve config's `args:` before anything starts.

A model catalogue (`models:`: any number of named models per task, each its own deployment), the
flows that chain them (`flows:`), the gateway and the cluster it is planned for. Moving from tiny
CPU models to real weights on a GPU cluster, or adding a model, is a YAML change. Ray- and
torch-free: the planner, the app builder (`graphs.app`), tests and benchmarks all read it here.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, model_validator

from mmserve.catalog import ModelArgs
from mmserve.config import Strict
from mmserve.config.flows import FLOWS, FlowsArgs
from mmserve.config.gateway import GatewayArgs
from mmserve.plan.placement import ClusterArgs


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
        if (partials := self.gateway.realtime.partials_model) is not None:
            model = self.model(partials)
            if model is None or not model.family.streams:
                streaming = [m.name for m in self.models if m.family.streams] or ["none"]
                raise ValueError(f"gateway.realtime.partials_model: {partials!r} is not a streaming ASR model in "
                                 f"models: (streaming ones: {', '.join(streaming)})")
        return self

    def _check_flow(self, name: str, flow: Strict) -> None:
        kind = FLOWS[name]
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
        for name, kind in FLOWS.items():
            args = self.flows.args_of(name)
            chosen = {stage: getattr(args, stage) or getattr(self.default_model(stage), "name", None)
                      for stage in kind.stages}
            if all(chosen[stage] for stage in kind.required):
                flows[name] = args.model_copy(update=chosen)
        return flows


def load_app_args(config_path: str | Path, app_name: str = "mmserve") -> AppArgs:
    """The validated args of one application in a Serve config file (tests, scripts, benchmarks)."""
    config = yaml.safe_load(Path(config_path).read_text())
    for application in config["applications"]:
        if application["name"] == app_name:
            return AppArgs.model_validate(application["args"])
    raise KeyError(f"no application named {app_name!r} in {config_path}")

"""What a runner family declares about itself, in one place, for the registry (`registry.py`).

A family is one way of running one kind of model (FunASR Paraformer, diffusers SD3, lmdeploy LLM,
...). Its module builds one `Family`; the registry lists the modules by import string. Config
validation, the planner, the generic deployments, the tiny-model builder and the gateway's model
list all read these declarations, so adding a family touches no per-task code. Torch-free: a
family module imports its model library only when its runner is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel

from mmserve.tasks import TASKS, Task, task


@dataclass(frozen=True)
class Family:
    name: str  # the `runner.family` value in YAML
    task: str  # a key of mmserve.tasks.TASKS: picks the deployment, the runner interface and the API routes
    args: type[BaseModel]  # the runner's pydantic args; its `family` field is a Literal naming this family
    runner: Callable[[Any], Any]  # built with the args on the replica; satisfies its task's runner Protocol
    # extra checks of the runner args against the deployment (e.g. tensor parallel vs num_gpus);
    # raise ValueError naming the field
    check: Callable[[Any, Any], None] | None = None
    # the capacity planner's GPU memory estimate of one model entry: (ModelArgs, image side) ->
    # mmserve.sizing.estimates.ModelEstimate; None: planned as "cannot be sized" (a warning)
    estimate: Callable[[Any, int], Any] | None = None
    # args fields naming model folders (a str, or a dict of name -> folder): made absolute at build
    # time, since replicas run in another working directory
    path_fields: tuple[str, ...] = ("model",)
    # the tiny random-weight models its tests and configs/local.yaml use: folder name -> module in
    # mmserve.tiny whose build(out_dir) writes it
    tiny: Mapping[str, str] = field(default_factory=dict)
    # the real architecture configs it ships for the planner: hub id (as a config names it) -> folder
    # under mmserve/model_configs (laid out like the hub repo, no weights)
    shipped: Mapping[str, str] = field(default_factory=dict)
    # its runner takes a live turn chunk by chunk (`stream(session, turn, seq, samples, final)` ->
    # mmserve.protocol.asr.StreamStep): it can give a realtime session's partial transcripts
    streams: bool = False

    def __post_init__(self) -> None:
        task(self.task)  # an unknown task is an error at import, naming the tasks there are

    @property
    def declared_task(self) -> Task:
        return TASKS[self.task]

    @property
    def batches(self) -> bool:
        """Its task's deployment batches calls, so a model of this family may set `batch:`."""
        return self.declared_task.batches

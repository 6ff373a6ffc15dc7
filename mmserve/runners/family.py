"""What a runner family declares about itself, in one place, for the registry (`registry.py`).

A family is one way of running one kind of model (FunASR Paraformer, diffusers SD3, lmdeploy LLM,
...). Its module builds one `Family`; the registry lists them. Config validation, the generic
deployment builder and the gateway's model list all read these declarations, so adding a family
touches no per-task code. Torch-free, so this declaration type can be read anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel

TASKS = ("asr", "image", "llm", "tts", "vlm", "music")


@dataclass(frozen=True)
class Family:
    name: str  # the `runner.family` value in YAML
    task: str  # one of TASKS: picks the deployment class and the API routes that reach it
    args: type[BaseModel]  # the runner's pydantic args; its `family` field is a Literal naming this family
    runner: Callable[[Any], Any]  # built with the args on the replica
    batches: bool = False  # True: the deployment batches calls (`@serve.batch`), so `batch:` is allowed
    # extra checks of the runner args against the deployment (e.g. tensor parallel vs num_gpus);
    # raise ValueError naming the field
    check: Callable[[Any, Any], None] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"family {self.name!r}: unknown task {self.task!r} (one of {', '.join(TASKS)})")

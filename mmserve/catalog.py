"""One entry of the model catalogue (`models:` in the app config): a named model, its runner family
and args, its placement and scaling.

The name is both the OpenAI model id and the Serve deployment name, so readiness, metrics and
`/v1/models` all speak of the same thing. The task comes from the family, never from the YAML.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from mmserve.config import BatchArgs, DeploymentArgs, Strict
from mmserve.runners.family import Family
from mmserve.runners.registry import FAMILIES, RunnerArgs

RESERVED_NAMES = ("gateway",)  # the ingress deployment's own name


class ModelArgs(Strict):
    name: str = Field(pattern=r"^[^\s#]+$", description="OpenAI model id and Serve deployment name; unique")
    runner: RunnerArgs
    deployment: DeploymentArgs = Field(default_factory=DeploymentArgs)
    batch: BatchArgs | None = Field(None, description="dynamic batching; only for families that batch")
    default: bool = Field(False, description="the task's model when a request names none (else the task's first)")

    @property
    def family(self) -> Family:
        return FAMILIES[self.runner.family]

    @property
    def task(self) -> str:
        return self.family.task

    @property
    def adapters(self) -> dict[str, str]:
        """LoRA adapters served on top of this model (name -> folder); only LLM families take them."""
        return dict(getattr(self.runner, "adapters", None) or {})

    @property
    def batching(self) -> BatchArgs:
        """The batch settings a batching deployment starts with."""
        return self.batch or BatchArgs()

    @model_validator(mode="after")
    def _fits_its_family(self) -> "ModelArgs":
        if self.name in RESERVED_NAMES:
            raise ValueError(f"model name {self.name!r} is reserved")
        if self.runner.family not in FAMILIES:
            raise ValueError(f"model {self.name!r}: runner.family {self.runner.family!r} is not registered")
        family = self.family
        if self.batch is not None and not family.batches:
            batching = ", ".join(f.name for f in FAMILIES.values() if f.batches)
            raise ValueError(f"model {self.name!r}: batch is not allowed for family {family.name!r}, which does "
                             f"not batch (families that do: {batching})")
        if family.check is not None:
            try:
                family.check(self.runner, self.deployment)
            except ValueError as exc:
                raise ValueError(f"model {self.name!r}: {exc}") from None
        return self

"""Typed deployment options shared by every deployment's app-builder args.

`serve_config.yaml` sets these under each model's `deployment:` key; they become
`Deployment.options(...)`, so GPU fraction, replicas and autoscaling change in YAML, not code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Unknown keys are errors: a typo in YAML must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class AutoscalingArgs(Strict):
    min_replicas: int = Field(1, ge=0, description="0 lets a rarely used model scale to zero")
    initial_replicas: int | None = Field(None, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0, description="per replica, drives scaling")
    upscale_delay_s: float = Field(30.0, ge=0)
    downscale_delay_s: float = Field(600.0, ge=0)
    look_back_period_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> "AutoscalingArgs":
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        return self


class DeploymentArgs(Strict):
    """Placement and scaling of one deployment."""

    num_gpus: float = Field(0.0, ge=0, description="Ray GPU fraction; the replica caps its memory to it")
    num_cpus: float = Field(1.0, ge=0)
    resources: dict[str, float] = Field(
        default_factory=dict, description="Ray custom resources each replica needs, e.g. {node_a: 0.01}: "
        "the replicas then run only on nodes started with that resource (`ray start --resources`)")
    num_replicas: int = Field(1, ge=0, description="used when autoscaling is not set")
    autoscaling: AutoscalingArgs | None = None
    max_ongoing_requests: int = Field(4, ge=1, description="concurrent requests per replica")
    max_queued_requests: int = Field(32, ge=-1, description="bounded queue: overflow answers 503 at once; -1 = unbounded")
    health_check_period_s: float = Field(10.0, gt=0)
    health_check_timeout_s: float = Field(30.0, gt=0)
    graceful_shutdown_timeout_s: float = Field(20.0, ge=0)
    max_surge_percent: int = Field(
        25, ge=0, le=100, description="extra replicas a rolling update (a changed config under `serve deploy`) "
        "may start before stopping old ones, as a percentage of the replica count, rounded up: 25 is one at a time "
        "up to 4 replicas. Serve's default, 0, stops a model's only replica before its replacement is ready, and "
        "requests in flight at the gateway can outlive graceful_shutdown_timeout_s waiting for it. Set 0 where the "
        "cluster has no room for one more replica of the model")
    warmup: bool = Field(
        True, description="run one small request while the replica starts, so no user request pays for "
        "lazy initialisation (kernels, caches, JIT); the replica takes traffic only after it")

    @model_validator(mode="after")
    def _custom_resources_only(self) -> "DeploymentArgs":
        for key, amount in self.resources.items():
            if key in ("CPU", "GPU", "memory"):
                raise ValueError(f"resources.{key}: use num_cpus / num_gpus, not a custom resource")
            if amount <= 0:
                raise ValueError(f"resources.{key}: must be > 0, got {amount}")
        return self

    @property
    def always_on(self) -> bool:
        """At least one replica whenever the app runs (not scaled to zero)."""
        return self.autoscaling.min_replicas > 0 if self.autoscaling is not None else self.num_replicas > 0

    def serve_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                                  **({"resources": dict(self.resources)} if self.resources else {})},
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
            "max_surge_percent": self.max_surge_percent,
        }
        if self.autoscaling is not None:
            opts["num_replicas"] = "auto"
            opts["autoscaling_config"] = self.autoscaling.model_dump(exclude_none=True)
        else:
            opts["num_replicas"] = self.num_replicas
        return opts


class BatchArgs(Strict):
    """Dynamic batching (`@serve.batch`); max_batch_size 1 turns it off."""

    max_batch_size: int = Field(4, ge=1)
    batch_wait_timeout_s: float = Field(0.05, ge=0)


def resolve_model_path(value: str) -> str:
    """A relative path that exists under $MMSERVE_MODEL_ROOT (or the cwd) becomes absolute.

    Replicas run in other working directories, so relative folders in a config are resolved once,
    at build time. Anything else (a hub id such as `stabilityai/...`) passes through unchanged.
    """
    if os.path.isabs(value):
        return value
    root = Path(os.environ.get("MMSERVE_MODEL_ROOT", os.getcwd()))
    candidate = root / value
    return str(candidate.resolve()) if candidate.exists() else value

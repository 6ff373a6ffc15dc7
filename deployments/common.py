"""What every model deployment does the same way at start and in health: loading its model entry's
runner, model paths, the GPU memory cap, batching settings. Running calls: `deployments/calls.py`."""

from __future__ import annotations

import gc
import logging
import time
from typing import Any, TypeVar

from pydantic import BaseModel

from mmserve.catalog import ModelArgs
from mmserve.config import BatchArgs, resolve_model_path
from mmserve.devices import cap_gpu_memory, check_device, resolve_device

log = logging.getLogger("ray.serve")
T = TypeVar("T")

def with_resolved_paths(model: ModelArgs) -> BaseModel:
    """A copy of the model's runner args whose local model folders (its family's `path_fields`: a
    folder, or a dict of name -> folder such as LoRA adapters) are absolute: replicas have another cwd."""
    updates: dict[str, Any] = {}
    for name in model.family.path_fields:
        value = getattr(model.runner, name, None)
        if isinstance(value, str):
            updates[name] = resolve_model_path(value)
        elif isinstance(value, dict):
            updates[name] = {key: resolve_model_path(folder) for key, folder in value.items()}
    return model.runner.model_copy(update=updates)


class ModelReplica:
    """Base of every model deployment: loads its runner on the right device, reports health."""

    device: str = "cpu"

    def load_runner(self, model: ModelArgs) -> Any:
        """The model's runner (its family's) on this replica's device; warmed up (Serve routes no
        traffic until __init__ returns)."""
        resolved = with_resolved_paths(model)
        self.device = prepare_replica(resolved.device)
        runner = model.family.runner(resolved.model_copy(update={"device": self.device}))
        if model.deployment.warmup:
            start = time.perf_counter()
            runner.warmup()
            log.info("%s (%s) warmed up in %.2f s", model.name, model.family.name, time.perf_counter() - start)
        freeze_startup_objects()
        return runner

    def check_health(self) -> None:
        check_device(self.device)

    def progress(self) -> dict | None:
        """The runner's work counter (`mmserve.runners.progress.Progress`: steps, cancels, steps at the
        last cancel), for tests and debugging; None for a runner that keeps none."""
        counter = getattr(getattr(self, "runner", None), "progress", None)
        return None if counter is None else counter.snapshot()


class BatchedReplica(ModelReplica):
    """A model deployment with one `@serve.batch` method, named by `batched_method`.

    Batch size and wait come from the YAML's `batch:` at start-up and can be changed at run time,
    without restarting replicas, through the deployment's `user_config` (-> `reconfigure`).
    """

    batched_method: str = ""

    def apply_batching(self, batch: BatchArgs) -> None:
        method = getattr(self, self.batched_method)
        method.set_max_batch_size(batch.max_batch_size)
        method.set_batch_wait_timeout_s(batch.batch_wait_timeout_s)

    def reconfigure(self, user_config: dict) -> None:
        self.apply_batching(BatchArgs.model_validate(user_config.get("batch", user_config)))


def freeze_startup_objects() -> None:
    """Move everything loaded so far (libraries, model objects) out of the garbage collector's view.

    A replica holds far more long-lived Python objects than the requests it serves create; without
    this, every full collection during a request walks all of them again (CPython's gc.freeze,
    the same thing Serve's RAY_SERVE_FREEZE_GC_ON_STARTUP does for its own start-up).
    """
    gc.collect()
    gc.freeze()


def assigned_gpu_fraction() -> float | None:
    """The GPU share Ray assigned this process (a replica's num_gpus); None outside Ray.

    Asks only when Ray is already connected: `get_runtime_context()` would otherwise start a local
    Ray instance of its own.
    """
    try:
        import ray
    except ImportError:  # the GPU check machine has no Ray
        return None
    if not ray.is_initialized():
        return None
    try:
        return ray.get_runtime_context().get_assigned_resources().get("GPU")
    except AssertionError:  # a driver, not a worker (tests, scripts that host a cluster): nothing assigned
        return None


def prepare_replica(device: str) -> str:
    """Pick the device and cap this replica's GPU memory to the fraction Ray assigned it."""
    resolved = resolve_device(device)
    fraction = assigned_gpu_fraction()
    applied = cap_gpu_memory(fraction, resolved)
    log.info("replica on %s, assigned GPU %s, memory cap %s", resolved, fraction, applied)
    return resolved

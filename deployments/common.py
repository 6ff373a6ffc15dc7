"""What every model deployment does the same way: GPU memory cap, model paths, blocking calls."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, TypeVar

from pydantic import BaseModel

from mmserve.config import BatchArgs, resolve_model_path
from mmserve.devices import cap_gpu_memory, resolve_device

log = logging.getLogger("ray.serve")
T = TypeVar("T")

MODEL_PATH_FIELDS = ("model", "vad_model", "punc_model")


def with_resolved_paths(runner_args: BaseModel) -> BaseModel:
    """A copy of runner args whose local model folders are absolute (replicas have another cwd)."""
    updates = {
        name: resolve_model_path(value)
        for name in MODEL_PATH_FIELDS
        if isinstance(value := getattr(runner_args, name, None), str)
    }
    return runner_args.model_copy(update=updates)


class ModelReplica:
    """Base of every model deployment: loads its runner on the right device, reports health."""

    device: str = "cpu"

    def load_runner(self, runner_cls: Callable[[Any], T], runner_args: BaseModel, *, warmup: bool = True) -> T:
        """The runner on this replica's device; warmed up (Serve routes no traffic until __init__ returns)."""
        resolved = with_resolved_paths(runner_args)
        self.device = prepare_replica(resolved.device)
        runner = runner_cls(resolved.model_copy(update={"device": self.device}))
        if warmup:
            start = time.perf_counter()
            runner.warmup()
            log.info("%s warmed up in %.2f s", runner_cls.__name__, time.perf_counter() - start)
        freeze_startup_objects()
        return runner

    def check_health(self) -> None:
        check_device(self.device)


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


def prepare_replica(device: str) -> str:
    """Pick the device and cap this replica's GPU memory to the fraction Ray assigned it."""
    resolved = resolve_device(device)
    fraction = assigned_gpu_fraction()
    applied = cap_gpu_memory(fraction, resolved)
    log.info("replica on %s, assigned GPU %s, memory cap %s", resolved, fraction, applied)
    return resolved


def assigned_gpu_fraction() -> float | None:
    try:
        import ray

        return ray.get_runtime_context().get_assigned_resources().get("GPU")
    except Exception:  # outside Ray (unit tests, scripts): nothing assigned
        return None


def check_device(device: str) -> None:
    """Health check: a CUDA context broken by a device fault fails a tiny round trip."""
    if device.startswith("cuda"):
        import torch

        torch.zeros(1, device=device).add_(1).cpu()


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run model work off the replica's event loop so health checks and other requests proceed."""
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


async def timed(call: Awaitable[T]) -> tuple[T, float]:
    """The call's result and its wall time in seconds."""
    start = time.perf_counter()
    result = await call
    return result, time.perf_counter() - start


async def first_item_timer(items: AsyncIterator[T], what: str, task: str) -> AsyncIterator[T]:
    """Pass a stream through, recording the time to its first item (token or audio chunk)."""
    from mmserve import metrics

    start, first = time.perf_counter(), True
    async for item in items:
        if first:
            metrics.time_to_first(what).observe((time.perf_counter() - start) * 1000, tags={"task": task})
            first = False
        yield item


async def iterate_in_thread(iterator: Iterator[T]) -> AsyncIterator[T]:
    """Drive a blocking iterator (a token or audio stream) off the event loop, item by item.

    Closing it when the consumer stops early (client gone) lets the runner stop generating.
    """
    done = object()
    try:
        while (item := await asyncio.to_thread(next, iterator, done)) is not done:
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()

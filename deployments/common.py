"""What every model deployment does the same way: loading its model entry's runner, GPU memory cap,
model paths, batching, blocking calls."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import threading
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, TypeVar

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


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run model work off the replica's event loop so health checks and other requests proceed."""
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


@contextlib.asynccontextmanager
async def cancelled_with_caller(cancel: Any) -> AsyncIterator[None]:
    """Set `cancel` (a `mmserve.runners.progress.Cancel`) when the caller's task is cancelled: Serve
    cancels it when the client disconnects, but work already handed to a thread (a batch) runs on."""
    try:
        yield
    except asyncio.CancelledError:
        cancel.set()
        raise


async def timed(call: Awaitable[T]) -> tuple[T, float]:
    """The call's result and its wall time in seconds."""
    start = time.perf_counter()
    result = await call
    return result, time.perf_counter() - start


async def first_item_timer(items: AsyncIterator[T], what: str, task: str) -> AsyncIterator[T]:
    """Pass a stream through, recording the time to its first item (token or audio chunk).

    Closes the stream it wraps when it is closed itself, at once rather than when garbage is collected,
    so a client that leaves cancels the work underneath without delay.
    """
    from deployments import metrics

    start, first = time.perf_counter(), True
    async with contextlib.aclosing(items):
        async for item in items:
            if first:
                metrics.time_to_first(what).observe((time.perf_counter() - start) * 1000, tags={"task": task})
                first = False
            yield item


def streamed(iterator: Iterator[T], what: str, task: str) -> contextlib.AbstractAsyncContextManager:
    """A runner's blocking stream as an async one, time to first item recorded:
    ``async with streamed(...) as items``. Leaving the block (the client went away) cancels it at once."""
    return contextlib.aclosing(first_item_timer(iterate_in_thread(iterator), what, task))


async def drained(iterator: Iterator) -> None:
    """Run a blocking stream to its end off the event loop; a caller that is cancelled cancels it."""
    async with contextlib.aclosing(iterate_in_thread(iterator)) as items:
        async for _ in items:
            pass


async def iterate_in_thread(iterator: Iterator[T], ahead: int = 64) -> AsyncIterator[T]:
    """Drive a blocking iterator (a token or audio stream) on a thread of its own, at most `ahead`
    items in front of the consumer.

    When the consumer stops early (client gone), the stream's thread-safe ``cancel()`` runs at once
    on a thread of its own (lmdeploy's abort blocks until the engine answers), and the producer
    closes the iterator after its current item: a generator cannot be closed from another thread
    while it is inside ``next()`` ("generator already executing").
    """
    loop = asyncio.get_running_loop()
    items: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()
    room = threading.Semaphore(ahead)

    def send(entry: tuple) -> None:
        try:
            loop.call_soon_threadsafe(items.put_nowait, entry)
        except RuntimeError:  # the loop has closed: nobody is listening any more
            pass

    def produce() -> None:
        error = None
        try:
            for item in iterator:
                while not room.acquire(timeout=0.1):
                    if stop.is_set():
                        break
                if stop.is_set():
                    break
                send((item, None))
        except BaseException as exc:  # re-raised in the consumer
            error = exc
        close = getattr(iterator, "close", None)
        try:
            if close is not None:
                close()  # before the end is announced: a finished stream holds nothing any more
        except BaseException as exc:
            error = error or exc
        send((_END, error))

    threading.Thread(target=produce, name="stream-producer", daemon=True).start()
    finished = False
    try:
        while True:
            item, error = await items.get()
            if item is _END:
                finished = True
                if error is not None:
                    raise error
                return
            room.release()
            yield item
    finally:
        if not finished:
            stop.set()
            cancel = getattr(iterator, "cancel", None)
            if cancel is not None:
                threading.Thread(target=_log_failure(cancel), name="stream-cancel", daemon=True).start()


def _log_failure(fn: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception:
            log.exception("cancelling a stream failed")

    return run


_END = object()

"""Model work off the replica's event loop, done one way for every deployment: blocking calls in a
thread, streams iterated in a thread, cancellation when the caller goes, and their timings."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, TypeVar

log = logging.getLogger("ray.serve")
T = TypeVar("T")


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

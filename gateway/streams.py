"""Streams from model replicas to HTTP clients, done one way for every route.

A deployment's stream is peeked before the response starts, so a request that fails before any
output (bad input, overload) is a plain error response with its status; once the response has
started, a failure can only be reported inside it, as a last SSE error event.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, AsyncIterator, TypeVar

from ray.serve.handle import DeploymentHandle

from graphs.stages import Stages, stage_error

T = TypeVar("T")

DONE = "data: [DONE]\n\n"


def sse(payload: Any) -> str:
    """One server-sent event carrying a JSON payload."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def peek(stages: Stages, stage: str, method: DeploymentHandle, *args: Any, empty: T | None = None,
               **kwargs: Any) -> tuple[T | None, AsyncIterator[T]]:
    """Start the streamed stage `method(*args)` (see `Stages.stream`) and await its first item now, so
    a failure before any output (bad input, overload, deadline) raises `stage_error(stage, ...)`
    before the response starts. Returns that item and the whole stream again, that item first; an
    empty stream gives `empty` as its only item, or no items and None when `empty` is None."""
    stream = stages.stream(stage, method, *args, **kwargs)
    try:
        first = await stream.__anext__()
    except StopAsyncIteration:
        return empty, _items([] if empty is None else [empty], None)
    return first, _items([first], stream)


async def _items(head: list[T], tail: AsyncIterator[T] | None) -> AsyncIterator[T]:
    for item in head:
        yield item
    if tail is not None:
        async with contextlib.aclosing(tail):
            async for item in tail:
                yield item


async def sse_events(payloads: AsyncIterator[Any], stage: str) -> AsyncIterator[str]:
    """SSE text of each payload, then `[DONE]`; a failure mid-stream becomes a final error event
    naming the stage (`stage_error`) instead of a cut connection."""
    try:
        async for payload in payloads:
            yield sse(payload)
    except Exception as exc:
        yield sse(stage_error(stage, exc).to_dict())
    yield DONE

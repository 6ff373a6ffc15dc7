"""Calling one stage of a flow (a model deployment, or a sub-flow): its deadline, one retry when its
replica died before answering, its time, and a failure that names the stage.

A replica that dies is the server's trouble, not a bug in the request: a call whose replica died
is sent once more (Serve routes it to a live replica, or to the replacement once it runs; every
model method is free of side effects, and a stream is retried only before its first item), and
otherwise the caller gets a 503 `replica_unavailable` with Retry-After, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator, Awaitable, TypeVar

from ray.exceptions import LocalRayletDiedError, NodeDiedError, ObjectLostError, RayActorError, WorkerCrashedError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from graphs import admission
from mmserve.errors import MMServeError, Overloaded, ReplicaUnavailable, StageFailed, StageTimeout

T = TypeVar("T")
log = logging.getLogger("ray.serve")

# What a caller sees when the process or node serving its call went away (not the request's fault).
REPLICA_LOSS = (RayActorError, WorkerCrashedError, NodeDiedError, LocalRayletDiedError, ObjectLostError,
                ReplicaUnavailableError, DeploymentUnavailableError)

# Logged by the gateway each time it sends a call again because the replica holding it died.
RESENT = "its replica died before answering; sending the call once more"

_deadlines: dict[str, float] = {}


def set_deadlines(deadlines: dict[str, float]) -> None:
    """Each stage's deadline in seconds, by stage name (set once by the gateway replica)."""
    _deadlines.clear()
    _deadlines.update(deadlines)


def unwrap(exc: BaseException) -> BaseException:
    """The original exception behind a Ray task error (raised inside a replica)."""
    return getattr(exc, "cause", None) or exc


def replica_lost(exc: BaseException | None) -> bool:
    """True when the error, or one it wraps, says the serving process or node went away."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, REPLICA_LOSS):
            return True
        seen.add(id(exc))
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return False


async def run_stage(name: str, call: DeploymentHandle | Awaitable[T], *args: Any,
                    timings: dict[str, float] | None = None, **kwargs: Any) -> T:
    """Await one stage: `call` is a handle method (`handle.transcribe`), called with `args` and sent
    once more if its replica dies before answering, or an awaitable (a sub-flow). Any failure
    becomes `stage_error(name, ...)`; the time goes to `timings[f"{name}_ms"]` when timings are kept."""
    start = time.perf_counter()
    ends = _ends_at(name)
    try:
        if not isinstance(call, DeploymentHandle):
            return await _within(call, name, ends)
        try:
            return await _within(_send(call, args, kwargs), name, ends)
        except Exception as exc:
            if not replica_lost(exc):
                raise
            log.warning("stage %s: %s", name, RESENT)
        try:
            return await _within(_send(call, args, kwargs), name, ends)
        except StageTimeout:
            raise ReplicaUnavailable(f"stage {name!r}: its replica died and no other answered in time, retry later",
                                     stage=name) from None
    except Exception as exc:
        raise stage_error(name, exc) from None
    finally:
        if timings is not None:
            timings[f"{name}_ms"] = round((time.perf_counter() - start) * 1000, 2)


async def stream_stage(name: str, method: DeploymentHandle, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
    """A streamed stage (`handle.options(stream=True).stream`): its first item within the stage's
    deadline, sent once more if its replica died before any item, then each item within the deadline
    of the one before. Failures raise `stage_error(name, ...)`; closing this closes the stream."""
    stream = None
    for attempt in (1, 2):
        stream = method.remote(*args, **kwargs)
        try:
            first = await _within(_next(stream, method), name, _ends_at(name))
            break
        except StopAsyncIteration:
            return
        except Exception as exc:
            stream.cancel()
            if attempt == 1 and replica_lost(exc):
                log.warning("stage %s: %s (before its first item)", name, RESENT)
                continue
            raise stage_error(name, exc) from None
    finished = False
    try:
        yield first
        while True:
            try:
                item = await _within(_next(stream, method), name, _ends_at(name))
            except StopAsyncIteration:
                finished = True
                return
            except Exception as exc:
                finished = True
                raise stage_error(name, exc) from None
            yield item
    finally:
        if not finished:  # the consumer left (client gone): stop the work underneath now
            stream.cancel()


def stage_error(name: str, exc: BaseException) -> MMServeError:
    cause = unwrap(exc)
    if isinstance(cause, MMServeError):
        cause.stage = cause.stage or name
        return cause
    if isinstance(cause, BackPressureError) or isinstance(exc, BackPressureError):
        return Overloaded(f"stage {name!r} is overloaded, retry later", stage=name)
    if replica_lost(exc):
        return ReplicaUnavailable(f"stage {name!r}: its replica went away before answering, retry later", stage=name)
    return StageFailed(f"stage {name!r} failed: {type(cause).__name__}: {cause}", stage=name)


async def _send(method: DeploymentHandle, args: tuple, kwargs: dict) -> Any:
    """One call; tells admission when the model refused it (queue full) or freed a slot."""
    response = method.remote(*args, **kwargs)
    try:
        result = await response
    except BackPressureError:
        admission.saturation.refused(method.deployment_name)
        raise
    except asyncio.CancelledError:  # deadline passed or the client left: stop the replica's work too
        response.cancel()
        raise
    except Exception:
        admission.saturation.finished(method.deployment_name)
        raise
    admission.saturation.finished(method.deployment_name)
    return result


async def _next(stream: Any, method: DeploymentHandle) -> Any:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        admission.saturation.finished(method.deployment_name)
        raise
    except BackPressureError:
        admission.saturation.refused(method.deployment_name)
        raise


def _ends_at(name: str) -> float | None:
    deadline = _deadlines.get(name)
    return None if deadline is None else time.monotonic() + deadline


async def _within(call: Awaitable[T], name: str, ends: float | None) -> T:
    """`call`'s result, or StageTimeout naming the stage once `ends` (monotonic time) has passed."""
    if ends is None:
        return await call
    timeout = asyncio.timeout(max(ends - time.monotonic(), 0))
    try:
        async with timeout:
            return await call
    except TimeoutError:
        if not timeout.expired():
            raise
        raise StageTimeout(f"stage {name!r} did not answer within its {_deadlines[name]:g} s deadline",
                           stage=name) from None


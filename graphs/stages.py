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

from mmserve.errors import MMServeError, Overloaded, ReplicaUnavailable, StageFailed, StageTimeout

T = TypeVar("T")
log = logging.getLogger("ray.serve")

# What a caller sees when the process or node serving its call went away (not the request's fault).
REPLICA_LOSS = (RayActorError, WorkerCrashedError, NodeDiedError, LocalRayletDiedError, ObjectLostError,
                ReplicaUnavailableError, DeploymentUnavailableError)

# Logged by the gateway each time it sends a call again because the replica holding it died.
RESENT = "its replica died before answering; sending the call once more"



class Saturation:
    """Deployments (by name) that refused a call and have not been seen to free a slot since.

    When a model deployment refuses a call because its bounded queue is full (Serve's
    BackPressureError), the gateway replica remembers it for a moment, so the gateway can answer
    requests that could only reach saturated models with a 503 before reading their bodies. The
    mark clears when a call to that model finishes (a slot was freed) or after `hold_s` (calls from
    other gateway replicas free slots too), so the next request probes the queue again.
    """

    def __init__(self, hold_s: float = 1.0):
        self.hold_s = hold_s
        self._until: dict[str, float] = {}

    def refused(self, deployment: str) -> None:
        self._until[deployment] = time.monotonic() + self.hold_s

    def finished(self, deployment: str) -> None:
        self._until.pop(deployment, None)

    def full(self, deployment: str) -> bool:
        until = self._until.get(deployment)
        if until is not None and time.monotonic() >= until:
            del self._until[deployment]
            return False
        return until is not None


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


class Stages:
    """How this gateway replica calls stages: each stage's deadline (seconds by stage name; a stage
    without one has none) and the saturation marks its calls leave. One per gateway replica, handed
    to the routes and flows through the gateway's services, never a module global."""

    def __init__(self, deadlines: dict[str, float] | None = None, saturation: Saturation | None = None):
        self.deadlines = dict(deadlines or {})
        self.saturation = saturation or Saturation()

    async def run(self, name: str, call: DeploymentHandle | Awaitable[T], *args: Any,
                  timings: dict[str, float] | None = None, **kwargs: Any) -> T:
        """Await one stage: `call` is a handle method (`handle.transcribe`), called with `args` and sent
        once more if its replica dies before answering, or an awaitable (a sub-flow). Any failure
        becomes `stage_error(name, ...)`; the time goes to `timings[f"{name}_ms"]` when timings are kept."""
        start = time.perf_counter()
        ends = self._ends_at(name)
        try:
            if not isinstance(call, DeploymentHandle):
                return await self._within(call, name, ends)
            try:
                return await self._within(self._send(call, args, kwargs), name, ends)
            except Exception as exc:
                if not replica_lost(exc):
                    raise
                log.warning("stage %s: %s", name, RESENT)
            try:
                return await self._within(self._send(call, args, kwargs), name, ends)
            except StageTimeout:
                raise ReplicaUnavailable(f"stage {name!r}: its replica died and no other answered in time, retry later",
                                         stage=name) from None
        except Exception as exc:
            raise stage_error(name, exc) from None
        finally:
            if timings is not None:
                timings[f"{name}_ms"] = round((time.perf_counter() - start) * 1000, 2)

    async def stream(self, name: str, method: DeploymentHandle, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """A streamed stage (`handle.options(stream=True).stream`): its first item within the stage's
        deadline, sent once more if its replica died before any item, then each item within the deadline
        of the one before. Failures raise `stage_error(name, ...)`; closing this closes the stream."""
        stream = None
        for attempt in (1, 2):
            stream = method.remote(*args, **kwargs)
            try:
                first = await self._within(self._next(stream, method), name, self._ends_at(name))
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
                    item = await self._within(self._next(stream, method), name, self._ends_at(name))
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

    async def _send(self, method: DeploymentHandle, args: tuple, kwargs: dict) -> Any:
        """One call; tells admission when the model refused it (queue full) or freed a slot."""
        response = method.remote(*args, **kwargs)
        try:
            result = await response
        except BackPressureError:
            self.saturation.refused(method.deployment_name)
            raise
        except asyncio.CancelledError:  # deadline passed or the client left: stop the replica's work too
            response.cancel()
            raise
        except Exception:
            self.saturation.finished(method.deployment_name)
            raise
        self.saturation.finished(method.deployment_name)
        return result

    async def _next(self, stream: Any, method: DeploymentHandle) -> Any:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            self.saturation.finished(method.deployment_name)
            raise
        except BackPressureError:
            self.saturation.refused(method.deployment_name)
            raise

    def _ends_at(self, name: str) -> float | None:
        deadline = self.deadlines.get(name)
        return None if deadline is None else time.monotonic() + deadline

    async def _within(self, call: Awaitable[T], name: str, ends: float | None) -> T:
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
            raise StageTimeout(f"stage {name!r} did not answer within its {self.deadlines[name]:g} s deadline",
                               stage=name) from None

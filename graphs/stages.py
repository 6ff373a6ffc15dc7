"""Run one stage of a flow: time it, and make any failure name the stage."""

from __future__ import annotations

import time
from typing import Awaitable, TypeVar

from ray.serve.exceptions import BackPressureError

from mmserve.errors import MMServeError, Overloaded, StageFailed

T = TypeVar("T")


def unwrap(exc: BaseException) -> BaseException:
    """The original exception behind a Ray task error (raised inside a replica)."""
    return getattr(exc, "cause", None) or exc


async def run_stage(name: str, call: Awaitable[T], timings: dict[str, float] | None = None) -> T:
    """Await one call to a model (or a sub-flow); its failure becomes `stage_error(name, ...)` and
    its time `timings[f"{name}_ms"]` when timings are kept."""
    start = time.perf_counter()
    try:
        return await call
    except Exception as exc:
        raise stage_error(name, exc) from None
    finally:
        if timings is not None:
            timings[f"{name}_ms"] = round((time.perf_counter() - start) * 1000, 2)


def stage_error(name: str, exc: BaseException) -> MMServeError:
    cause = unwrap(exc)
    if isinstance(cause, MMServeError):
        cause.stage = cause.stage or name
        return cause
    if isinstance(cause, BackPressureError) or isinstance(exc, BackPressureError):
        return Overloaded(f"stage {name!r} is overloaded, retry later", stage=name)
    return StageFailed(f"stage {name!r} failed: {type(cause).__name__}: {cause}", stage=name)

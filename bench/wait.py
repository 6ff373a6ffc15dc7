"""The one wait-until helper: poll a condition until it holds or a deadline passes.

Benchmarks, drivers and the tests wait for the state they need, never for a fixed time, so they hold
on a busy machine. Standard library only (the GPU check and the tests import it).
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout_s: float, what: str | Callable[[], str] = "a condition",
               interval_s: float = 0.5, error: type[Exception] = TimeoutError) -> T:
    """Poll `condition()` every `interval_s` until it returns something truthy, and return that.

    After `timeout_s` raise `error` (TimeoutError; the tests pass AssertionError) naming `what`: a string,
    or a callable giving one then (e.g. what is still missing). The condition is polled once more at the
    deadline, so a state reached during the last sleep still counts.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if result := condition():
            return result
        if time.monotonic() >= deadline:
            raise error(f"timed out after {timeout_s:.0f} s waiting for {what() if callable(what) else what}")
        time.sleep(interval_s)


def ready(url: str, timeout_s: float = 10) -> bool:
    """The gateway's /readyz answers 200: every always-on model has a loaded, warmed-up replica."""
    import httpx  # here: mmserve's own dependency, not the tests' or the load tool's

    try:
        return httpx.get(url + "/readyz", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(url: str, timeout_s: float = 900, interval_s: float = 1) -> None:
    """Poll `url`/readyz until the stack is ready; TimeoutError after `timeout_s`."""
    wait_until(lambda: ready(url), timeout_s, f"{url}/readyz", interval_s)

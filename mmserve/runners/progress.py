"""How far a runner's work has gone, and the signal that stops it: one mechanism for every family.

`Progress` counts a family's steps (denoising steps, generated tokens, ChatTTS codes) so that a
deployment can report them (`ModelReplica.progress`) and a test can see work stop when its client
leaves. `Cancel` is one request's "the caller has gone" flag, set from any thread; `all_gone` asks
whether every request sharing a model call has gone, so one request leaving a batch never stops
the others. Plain Python, no Ray.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


class Progress:
    """Thread-safe step counter; also remembers the count when the last cancellation arrived, so that
    the steps done after a cancel (at most one is the promise) can be read from outside."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps = 0
        self._cancels = 0
        self._steps_at_cancel: int | None = None

    def step(self, n: int = 1) -> None:
        with self._lock:
            self._steps += n

    def cancelled(self) -> None:
        with self._lock:
            self._cancels += 1
            self._steps_at_cancel = self._steps

    def snapshot(self) -> dict:
        """`steps` so far, `cancels` received, `steps_at_cancel`: the count when the last one arrived."""
        with self._lock:
            return {"steps": self._steps, "cancels": self._cancels, "steps_at_cancel": self._steps_at_cancel}


class Cancel:
    """One request's cancellation: `set()` from any thread (the caller went away), read between steps.
    The first `set()` is noted in the runner's `Progress`."""

    def __init__(self, progress: Progress | None = None) -> None:
        self._event = threading.Event()
        self._progress = progress
        self._noted = threading.Lock()

    def set(self) -> None:
        with self._noted:
            if self._event.is_set():
                return
            if self._progress is not None:
                self._progress.cancelled()  # before the flag: no step can finish unseen in between
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


def all_gone(cancels: Iterable[Cancel | None]) -> bool:
    """True when every request of a shared model call has gone (a None never goes: no cancel given)."""
    cancels = list(cancels)
    return bool(cancels) and all(c is not None and c.is_set() for c in cancels)


class Stopped(Exception):
    """Raised inside a model call (a diffusers step callback) to end it: every caller has gone."""

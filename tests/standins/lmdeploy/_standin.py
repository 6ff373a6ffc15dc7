"""What the stand-in adds to lmdeploy's API: the call recorder, the knobs, the live pipelines.

Not part of the real package (hence the underscore). Each ``install()`` of the stand-in loads a
fresh copy of the package, so every test gets its own recorder, settings and pipelines.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Call:
    """One call into the stand-in: the entry point's name and the exact arguments it was given."""

    name: str
    args: tuple
    kwargs: dict
    thread: str


class Recorder:
    """Every call mmserve makes into the stand-in, in order (thread-safe)."""

    def __init__(self):
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def record(self, name: str, args: tuple, kwargs: dict) -> None:
        with self._lock:
            self.calls.append(Call(name, tuple(args), dict(kwargs), threading.current_thread().name))

    def named(self, name: str) -> list[Call]:
        """The calls to one entry point, e.g. ``"GenerationConfig"`` or ``"Pipeline.stream_infer"``."""
        with self._lock:
            return [c for c in self.calls if c.name == name]

    def last(self, name: str) -> Call:
        calls = self.named(name)
        if not calls:
            raise AssertionError(f"lmdeploy stand-in: {name} was never called; calls: {self.names()}")
        return calls[-1]

    def names(self) -> list[str]:
        with self._lock:
            return [c.name for c in self.calls]

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass
class Settings:
    """Knobs of the stand-in engine; change them before ``lmdeploy.pipeline`` is called.

    step_s: seconds per decoding step (every running request gets one token per step).
    preprocess_s: time ``preprocess`` takes (chat template, tokenizer, vision encoder) before the
        request takes an engine handle; ``Session.abort()`` in that window is a no-op, as in 0.18.
    stop_after: emit the model's EOS after this many tokens (finish_reason 'stop'); None: never,
        requests end on max_new_tokens or session_len ('length').
    image_tokens: prompt tokens one image adds; None: the config's ``image_seq_length`` + 2, else 258.
    max_batch_size: the engine's batch size when the config leaves it None (real: 128 on a GPU
        that is not A100/H100/H200-class, 384/1024 on those); ``Pipeline`` admits that many requests.
    """

    step_s: float = field(default_factory=lambda: _env_float("LMDEPLOY_STANDIN_STEP_S", 0.01))
    preprocess_s: float = field(default_factory=lambda: _env_float("LMDEPLOY_STANDIN_PREPROCESS_S", 0.0))
    stop_after: int | None = None
    image_tokens: int | None = None
    max_batch_size: int = 128


RECORDER = Recorder()
SETTINGS = Settings()
PIPELINES: list[Any] = []  # every Pipeline built, oldest first


def record_init(cls):
    """Record each construction of ``cls`` (exact args) before its own ``__init__`` validates them."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        RECORDER.record(cls.__name__, args, kwargs)
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls


def recorded(name: str):
    """Record each call of a function or method (``self`` left out) under ``name``."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            shown = args[1:] if name.split(".")[0] in ("Pipeline", "Session") else args
            RECORDER.record(name, shown, kwargs)
            return fn(*args, **kwargs)

        return inner

    return wrap

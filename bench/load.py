"""The one steady-load driver: closed-loop client threads sending the load tool's routes
(`bench.loadtest.routes`) with its payloads, every request kept as a `Sample`.

Chaos, rolling update, soak (its capacity run) and the multi-node tests use it; `send_one` is the
single request they all send (soak's open loop too). The locust-based load tool
(`python -m bench loadtest`) is the other way to load the stack: levels, sweeps, open loop.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import requests

from bench.loadtest.payloads import Payloads
from bench.loadtest.routes import ROUTES, Call, Options


class RecordingSession(requests.Session):
    """Keeps the last response's headers: the load tool's Outcome has no Retry-After."""

    last_headers = requests.structures.CaseInsensitiveDict()

    def request(self, *args, **kwargs):
        resp = super().request(*args, **kwargs)
        self.last_headers = resp.headers  # case-insensitive: the proxy sends `retry-after`
        return resp


@dataclass
class Sample:
    route: str
    start: float  # time.monotonic()
    end: float
    status: int  # 0: no response (connection refused or dropped)
    ok: bool  # a 2xx with the body the API promises (a stream that ends in an error event is not ok)
    retry_after: str | None
    error: str | None


def send_one(session: RecordingSession, base_url: str, route: str, payloads: Payloads, options: Options,
             i: int) -> Sample:
    """One request of `route` (payload number `i`), timed; a connection failure is status 0."""
    session.last_headers = requests.structures.CaseInsensitiveDict()
    start = time.monotonic()
    try:
        outcome = ROUTES[route].send(Call(session, base_url, payloads, options, i))
        status, error = outcome.status, outcome.error
    except requests.RequestException as exc:
        status, error = 0, f"{type(exc).__name__}: {exc}"[:300]
    return Sample(route, start, time.monotonic(), status, error is None and 200 <= status < 300,
                  session.last_headers.get("Retry-After") if status else None, error)


class SteadyLoad:
    """`users` closed-loop threads sending `routes` back to back until stopped; every request is kept.

    Each user cycles over every route from its own offset, or with `share=True` over its share of
    them (user u sends routes u, u + users, ...). `on_sample` sees each sample as it completes.
    """

    def __init__(self, base_url: str, routes: list[str], users: int = 3, payloads: Payloads | None = None,
                 options: Options | None = None, share: bool = False,
                 on_sample: Callable[[Sample], None] | None = None):
        self.base_url, self.routes, self.users, self.share = base_url, routes, users, share
        self.payloads = payloads or Payloads(["en", "zh"])
        self.options = options or Options(timeout_s=120)
        self.on_sample = on_sample
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def records(self) -> list[Sample]:
        return self.samples

    def start(self) -> SteadyLoad:
        for user in range(self.users):
            thread = threading.Thread(target=self._user, args=(user,), daemon=True, name=f"load-{user}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout_s: float = 300) -> list[Sample]:
        """Stop sending; wait for the requests in flight to finish (they count too)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        return self.samples

    def _user(self, user: int) -> None:
        session, i = RecordingSession(), user
        while not self._stop.is_set():
            sample = send_one(session, self.base_url, self.routes[i % len(self.routes)], self.payloads,
                              self.options, i)
            with self._lock:
                self.samples.append(sample)
            if self.on_sample is not None:
                self.on_sample(sample)
            i += self.users if self.share else 1

    def answered_since(self, t: float, route: str | None = None) -> list[Sample]:
        return [s for s in list(self.samples) if s.ok and s.start >= t and route in (None, s.route)]

    def between(self, start: float, end: float) -> list[Sample]:
        """Requests that were in flight at any moment of [start, end]."""
        with self._lock:
            return [s for s in self.samples if s.end >= start and s.start <= end]

    def count_since(self, start: float) -> int:
        with self._lock:
            return sum(1 for s in self.samples if s.end >= start)


def failed(samples: list[Sample], since: float) -> list[Sample]:
    return [s for s in samples if not s.ok and s.end >= since]


def status_label(sample: Sample) -> str:
    if sample.ok:
        return str(sample.status)
    if sample.status == 503:
        return "503+Retry-After" if sample.retry_after else "503 without Retry-After"
    if 200 <= sample.status < 300:
        return f"{sample.status} then stream/body error"
    return str(sample.status) if sample.status else "no response"

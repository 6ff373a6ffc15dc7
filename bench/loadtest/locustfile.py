"""The locust side: one User class that sends the route mix, closed-loop or paced open-loop.

Closed loop: N users, each sends its next request as soon as the previous reply is complete
(no wait time), so N is the concurrency.

Open loop: a single arrival schedule for the whole run (uniform or Poisson at `rate` requests
per second) that the users share. Each user claims the next arrival time, sleeps until it and
sends; the users are only a pool of senders. Latency is measured from the *scheduled* arrival,
so when every sender is busy the wait shows up in the latency instead of silently lowering the
offered rate (the "coordinated omission" that a per-user `constant_throughput` wait time has:
each of its users stops offering load while its own request is slow). Arrivals that started
more than 10 ms late are counted as `late_starts`; many of them mean the pool was too small.

Also usable with locust's own CLI (its stats only, no JSON report; mmserve must be importable, as
`pip install -e .` makes it):
    MMSERVE_ROUTES=speech-to-image,healthz locust -f bench/loadtest/locustfile.py --headless \
        -H http://127.0.0.1:8000 -u 4 -t 30s
"""

from __future__ import annotations

import itertools
import os
import random
import time
from dataclasses import dataclass, field

import gevent
import requests
from locust import User, constant, events, task
from locust.env import Environment

from bench.loadtest.payloads import Payloads
from bench.loadtest.routes import ROUTES, Call, Options, Outcome, parse_mix
from bench.loadtest.safety import check_loopback

LATE_S = 0.010


@dataclass
class Sample:
    route: str
    scheduled: float | None  # open loop: the arrival time it was sent for
    start: float
    end: float
    outcome: Outcome

    @property
    def origin(self) -> float:
        """Where latency is measured from: the scheduled arrival (open loop) or the send."""
        return self.scheduled if self.scheduled is not None else self.start


class Pacer:
    """The shared open-loop arrival schedule."""

    def __init__(self, rate: float, start: float, poisson: bool = False, seed: int = 0):
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate, self.next_at, self.poisson = rate, start, poisson
        self.rng = random.Random(seed)

    def claim(self) -> float:
        at = self.next_at
        gap = self.rng.expovariate(self.rate) if self.poisson else 1.0 / self.rate
        self.next_at += gap
        return at


@dataclass
class Plan:
    """What the users of one load level share (greenlets: no locks needed)."""

    base_url: str
    mix: dict[str, int]
    payloads: Payloads
    options: Options
    pacer: Pacer | None = None
    stopping: bool = False
    inflight: int = 0
    samples: list[Sample] = field(default_factory=list)
    counters: dict[str, itertools.count] = field(default_factory=dict)

    def __post_init__(self):
        # Round robin over the weighted mix: every route is exercised even in a short run.
        self.order = itertools.cycle([name for name, weight in self.mix.items() for _ in range(weight)])
        self.counters = {name: itertools.count() for name in self.mix}


class MMServeUser(User):
    """Sends one request of the plan's mix per task; `plan` is set before the users start."""

    wait_time = constant(0)
    plan: Plan | None = None

    def on_start(self) -> None:
        self.session = requests.Session()

    def on_stop(self) -> None:
        self.session.close()

    @task
    def one_request(self) -> None:
        plan = self.plan
        if plan.stopping:
            gevent.sleep(0.05)
            return
        name = next(plan.order)
        scheduled = None
        if plan.pacer is not None:
            scheduled = plan.pacer.claim()
            gevent.sleep(max(0.0, scheduled - time.perf_counter()))
            if plan.stopping:
                return
        route = ROUTES[name]
        call = Call(self.session, plan.base_url, plan.payloads, plan.options, next(plan.counters[name]))
        plan.inflight += 1
        start = time.perf_counter()
        try:
            outcome = route.send(call)
        except requests.RequestException as exc:
            outcome = Outcome(0, error=f"{type(exc).__name__}: {exc}"[:300])
        finally:
            plan.inflight -= 1
        end = time.perf_counter()
        if outcome.status == 0:
            gevent.sleep(0.1)  # nothing listening or connection lost: do not spin on the CPU
        sample = Sample(name, scheduled, start, end, outcome)
        plan.samples.append(sample)
        self.environment.events.request.fire(
            request_type=route.method, name=name, response_time=(end - sample.origin) * 1000,
            response_length=0, exception=RuntimeError(outcome.error) if outcome.error else None, context={},
        )


@dataclass
class Level:
    users: int
    rate: float | None
    warmup_s: float
    duration_s: float
    max_requests: int | None = None
    drain_s: float = 60.0
    poisson: bool = False
    seed: int = 0


def run_level(base_url: str, mix: dict[str, int], payloads: Payloads, options: Options, level: Level) -> dict:
    """Warm up, reset the stats, measure for duration_s, stop new requests, let in-flight ones finish."""
    plan = Plan(check_loopback(base_url), mix, payloads, options)
    started = time.perf_counter()
    if level.rate is not None:
        plan.pacer = Pacer(level.rate, started, level.poisson, level.seed)
    MMServeUser.plan = plan
    env = Environment(user_classes=[MMServeUser], host=plan.base_url)
    runner = env.create_local_runner()
    runner.start(level.users, spawn_rate=min(max(level.users, 1), 100))
    gevent.sleep(level.warmup_s)
    env.stats.reset_all()
    t0 = time.perf_counter()
    deadline = t0 + level.duration_s
    while time.perf_counter() < deadline:
        if level.max_requests and sum(1 for s in plan.samples if s.origin >= t0) >= level.max_requests:
            break
        gevent.sleep(0.05)
    t1 = time.perf_counter()
    plan.stopping = True
    drain_deadline = t1 + level.drain_s
    while plan.inflight and time.perf_counter() < drain_deadline:
        gevent.sleep(0.05)
    unfinished = plan.inflight
    locust_stats = {
        name: {"num_requests": entry.num_requests, "num_failures": entry.num_failures,
               "median_ms": entry.median_response_time, "rps": entry.total_rps}
        for (name, _method), entry in env.stats.entries.items()
    }
    runner.quit()
    return {"plan": plan, "t0": t0, "t1": t1, "started": started, "unfinished": unfinished,
            "late_starts": sum(1 for s in plan.samples if s.scheduled is not None and s.origin >= t0
                               and s.start - s.scheduled > LATE_S),
            "locust": locust_stats}


@events.test_start.add_listener
def _plan_for_locust_cli(environment, **_kwargs) -> None:
    """Under `locust -f`, build the plan from the CLI host and MMSERVE_ROUTES."""
    if MMServeUser.plan is None and environment.host:
        base = check_loopback(environment.host)
        MMServeUser.plan = Plan(base, parse_mix(os.environ.get("MMSERVE_ROUTES", "auto"), base), Payloads(), Options())

"""Soak: hours of mixed load on every route at a fraction of measured capacity; no errors, no leaks.

    python -m bench soak [--minutes 20] [--fraction 0.7] [--rate R] [--url URL --ray-address auto]
                           [--out docs/bench/soak.json]

Without --url it starts configs/local.yaml on a local Ray cluster in this process (tiny models,
built into --models or a temp dir). Then:

1. capacity: unless --rate is given, a closed-loop run of the whole route mix (--capacity-users
   clients, --capacity-seconds) measures how many requests/s of the mix the stack completes;
2. soak: open-loop load at --fraction of it (or --rate), evenly spaced arrivals cycling through
   every route the gateway lists (`bench.loadtest.routes`), latency counted from the scheduled
   arrival so a stalled stack cannot hide behind a slower offered rate;
3. every --interval s a sample: each Serve replica's RSS (psutil on the replica PIDs from the
   Serve controller, by deployment), Ray's object store use (the raylet's store stats), requests
   and errors per route so far.

Goals, checked at the end (exit status 1 when one fails): 0 errors; each replica's RSS at the end
within --rss-tolerance (10 %) of its value after warm-up (the first --warmup s); the object store's
use at the end within --store-slack-mb of its value after warm-up. Writes the JSON (samples,
per-replica RSS after warm-up vs end, object store min/max, errors, command, machine) and a PNG.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import psutil  # noqa: E402

from bench import report as rw  # noqa: E402
from bench.load import RecordingSession, Sample, SteadyLoad, send_one  # noqa: E402
from bench.loadtest.payloads import Payloads  # noqa: E402
from bench.loadtest.routes import Options, parse_mix  # noqa: E402
from bench.loadtest.safety import check_loopback  # noqa: E402
from bench.report import BENCH_DIR, ROOT  # noqa: E402
from bench.stack import start_stack, stop_stack  # noqa: E402
from bench.wait import wait_ready  # noqa: E402

OUT = BENCH_DIR / "soak.json"
MB = 1024 * 1024


def latency_ms(latencies_s: list[float]) -> dict:
    """p50, p99 and max in ms, each an observed latency (numpy's "higher" method: the sample at index
    floor(q * n) of the sorted list, as this report has always picked them)."""
    return rw.percentiles(latencies_s, (50, 99, 100), method="higher", extra=(), scale=1000, digits=1)


class Traffic:
    """Sends the route mix and counts every reply per route: ok, errors by status, latencies."""

    def __init__(self, url: str, routes: list[str], options: Options, pool: int):
        self.url, self.routes, self.options = url, routes, options
        self.payloads = Payloads(["zh", "en"])
        self.lock = threading.Lock()
        self.stats = {r: {"ok": 0, "errors": {}, "latency_s": [], "late_starts": 0} for r in routes}
        self.examples: list[str] = []
        self.local = threading.local()
        self.executor = ThreadPoolExecutor(max_workers=pool, thread_name_prefix="soak")
        self.counter = itertools.count()

    def send(self, route: str, scheduled: float | None = None) -> None:
        """One request of the open loop, sent for its `scheduled` arrival, and counted."""
        session = getattr(self.local, "session", None) or RecordingSession()
        self.local.session = session
        self.count(send_one(session, self.url, route, self.payloads, self.options, next(self.counter)), scheduled)

    def count(self, sample: Sample, scheduled: float | None = None) -> None:
        """Latency from the scheduled arrival (open loop) or the send (closed loop)."""
        latency = sample.end - (scheduled if scheduled is not None else sample.start)
        with self.lock:
            s = self.stats[sample.route]
            if scheduled is not None and sample.start - scheduled > 0.5:
                s["late_starts"] += 1
            if sample.error is None:
                s["ok"] += 1
                s["latency_s"].append(latency)
            else:
                s["errors"][str(sample.status)] = s["errors"].get(str(sample.status), 0) + 1
                if len(self.examples) < 20:
                    self.examples.append(f"{sample.route} {sample.status}: {sample.error}")

    def closed_loop(self, users: int, seconds: float) -> float:
        """Requests/s of the mix that `users` back-to-back clients complete in `seconds` (each client its
        share of the routes; requests in flight at the end finish and count)."""
        start = time.monotonic()
        load = SteadyLoad(self.url, self.routes, users, self.payloads, self.options, share=True,
                          on_sample=self.count).start()
        time.sleep(seconds)
        done = len(load.stop(timeout_s=None))
        return done / (time.monotonic() - start)

    def open_loop(self, rate: float, seconds: float, stop: threading.Event) -> None:
        """Evenly spaced arrivals at `rate`/s, routes in turn, until `seconds` pass or `stop` is set."""
        start = time.monotonic()
        for k in itertools.count():
            due = start + k / rate
            if due - start >= seconds or stop.is_set():
                return
            while (wait := due - time.monotonic()) > 0 and not stop.is_set():
                stop.wait(min(wait, 0.5))
            self.executor.submit(self.send, self.routes[k % len(self.routes)], due)

    def snapshot(self) -> dict:
        with self.lock:
            return {r: {"ok": s["ok"], "errors": sum(s["errors"].values())} for r, s in self.stats.items()}

    def reset(self) -> None:
        with self.lock:
            for s in self.stats.values():
                s.update(ok=0, errors={}, latency_s=[], late_starts=0)
            self.examples.clear()

    def summary(self) -> dict:
        with self.lock:
            out = {}
            for route, s in self.stats.items():
                lat = sorted(s["latency_s"])
                out[route] = {"ok": s["ok"], "errors_by_status": s["errors"], "late_starts": s["late_starts"],
                              "latency_ms": {"p50": (ms := latency_ms(lat))["p50"], "p99": ms["p99"],
                                             "max": ms["p100"]} if lat else None}
            return out


# ---- what the cluster holds: replica RSS, object store ----

def replica_processes() -> dict[str, dict]:
    """{replica_id: {"deployment", "pid"}} of every RUNNING Serve replica, from the Serve controller."""
    from ray.serve._private.api import _get_global_client

    out = {}
    details = _get_global_client().get_serve_details()
    for app_name, app in (details.get("applications") or {}).items():
        for dep_name, dep in app.get("deployments", {}).items():
            for r in dep.get("replicas", []):
                if r.get("state") == "RUNNING" and r.get("pid"):
                    out[r["replica_id"]] = {"deployment": f"{app_name}/{dep_name}", "pid": r["pid"]}
    return out


def rss_mb(pid: int) -> float | None:
    try:
        return round(psutil.Process(pid).memory_info().rss / MB, 1)
    except psutil.Error:
        return None


def object_store_used_mb() -> float:
    """Bytes in Ray's shared-memory object store, cluster-wide (the raylet's store stats)."""
    import ray
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    reply = get_memory_info_reply(get_state_from_address(ray.get_runtime_context().gcs_address))
    return round(reply.store_stats.object_store_bytes_used / MB, 2)


def take_sample(t0: float, traffic: Traffic) -> dict:
    replicas = {rid: {**info, "rss_mb": rss_mb(info["pid"])} for rid, info in replica_processes().items()}
    return {"t_s": round(time.monotonic() - t0, 1), "object_store_used_mb": object_store_used_mb(),
            "replicas": {rid: {"deployment": v["deployment"], "rss_mb": v["rss_mb"]} for rid, v in replicas.items()},
            "requests": traffic.snapshot(), "loadavg": round(os.getloadavg()[0], 2)}


# ---- goals ----

def judge(samples: list[dict], warmup_s: float, rss_tolerance: float, store_slack_mb: float,
          routes: dict) -> dict:
    """Per-replica RSS after warm-up vs end, object store min/max, errors; which goals hold."""
    baseline = next((s for s in samples if s["t_s"] >= warmup_s), samples[-1])
    end = samples[-1]
    replicas = []
    for rid, info in sorted(end["replicas"].items(), key=lambda kv: kv[1]["deployment"]):
        before = baseline["replicas"].get(rid, {}).get("rss_mb")
        after = info["rss_mb"]
        change = round(100 * (after - before) / before, 1) if before and after else None
        replicas.append({"deployment": info["deployment"], "replica_id": rid, "rss_after_warmup_mb": before,
                         "rss_end_mb": after, "change_pct": change,
                         "note": None if change is not None else "started after warm-up: no baseline"})
    after_warmup = [s["object_store_used_mb"] for s in samples if s["t_s"] >= baseline["t_s"]]
    store = {"after_warmup_mb": baseline["object_store_used_mb"], "end_mb": end["object_store_used_mb"],
             "min_mb": min(after_warmup), "max_mb": max(after_warmup),
             "growth_mb": round(end["object_store_used_mb"] - baseline["object_store_used_mb"], 2)}
    errors = sum(sum(r["errors_by_status"].values()) for r in routes.values())
    goals = {
        "no_errors": errors == 0,
        "rss_within_tolerance": all(r["change_pct"] is None or abs(r["change_pct"]) <= 100 * rss_tolerance
                                    for r in replicas),
        "object_store_flat": store["growth_mb"] <= store_slack_mb,
    }
    return {"warmup_baseline_t_s": baseline["t_s"], "errors": errors, "replicas": replicas, "object_store": store,
            "goals": goals, "passed": all(goals.values())}


def plot(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["samples"]
    ts = [s["t_s"] / 60 for s in samples]
    fig, (rss_ax, store_ax, req_ax) = plt.subplots(3, 1, figsize=(13, 11), sharex=True)
    for rid in sorted({rid for s in samples for rid in s["replicas"]}):
        points = [(s["t_s"] / 60, s["replicas"][rid]["rss_mb"]) for s in samples if rid in s["replicas"]]
        deployment = next(s["replicas"][rid]["deployment"] for s in samples if rid in s["replicas"])
        rss_ax.plot(*zip(*points), label=f"{deployment.split('/')[-1]} {rid[-6:]}")
    rss_ax.axvline(report["result"]["warmup_baseline_t_s"] / 60, color="grey", ls=":", label="end of warm-up")
    rss_ax.set_ylabel("RSS (MiB)")
    rss_ax.set_title("Serve replica RSS")
    rss_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    store_ax.plot(ts, [s["object_store_used_mb"] for s in samples], "o-", ms=3)
    store_ax.set_ylabel("MiB")
    store_ax.set_title("Ray object store in use")
    done = [sum(r["ok"] for r in s["requests"].values()) for s in samples]
    errs = [sum(r["errors"] for r in s["requests"].values()) for s in samples]
    rates = [0.0] + [(done[i] - done[i - 1]) / max(1e-9, samples[i]["t_s"] - samples[i - 1]["t_s"])
                     for i in range(1, len(samples))]
    req_ax.plot(ts, rates, "o-", ms=3, color="tab:green", label="completed req/s")
    req_ax.axhline(report["config"]["rate_rps"], color="tab:green", ls="--", label="offered req/s")
    req_ax.plot(ts, errs, "x-", color="tab:red", label="errors (cumulative)")
    req_ax.set_xlabel("minutes")
    req_ax.set_title("requests")
    req_ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    goals = report["result"]["goals"]
    fig.suptitle(f"soak: {report['config']['minutes']} min at {report['config']['rate_rps']:.2f} req/s; "
                 + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in goals.items()), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ---- running it ----


def start_local_stack(models: Path | None) -> str:
    """configs/local.yaml on a Ray cluster started in this process; its base URL."""
    from ray import serve

    from graphs.app import build_app
    from mmserve.config.app import load_app_args
    from mmserve.tiny.catalog import build_all

    root = (models or Path(tempfile.mkdtemp(prefix="mmserve-soak-"))).resolve()
    build_all(root)
    stack = start_stack(root, num_cpus=16)
    serve.run(build_app(load_app_args(ROOT / "configs" / "local.yaml")), name="mmserve", route_prefix="/")
    return stack.url




def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=20, help="soak length after the capacity run")
    p.add_argument("--fraction", type=float, default=0.7, help="of the measured capacity")
    p.add_argument("--rate", type=float, default=None, help="offered req/s for the whole mix (skips the capacity run)")
    p.add_argument("--routes", default="auto", help="auto (every route the gateway lists) or name[:weight],...")
    p.add_argument("--url", default=None, help="a running gateway (loopback) instead of starting one")
    p.add_argument("--ray-address", default="auto", help="with --url: the Ray cluster serving it, for sampling "
                   "(a token-auth cluster needs RAY_AUTH_MODE=token, as the Ray CLI does)")
    p.add_argument("--models", type=Path, default=None, help="tiny model root when starting the stack")
    p.add_argument("--capacity-users", type=int, default=4)
    p.add_argument("--capacity-seconds", type=float, default=90)
    p.add_argument("--interval", type=float, default=15, help="seconds between samples")
    p.add_argument("--warmup", type=float, default=None, help="seconds of soak before the RSS/store baseline "
                   "(default: a fifth of the run, at most 3 minutes)")
    p.add_argument("--pool", type=int, default=48, help="open-loop sender threads")
    p.add_argument("--rss-tolerance", type=float, default=0.10)
    p.add_argument("--store-slack-mb", type=float, default=32.0)
    p.add_argument("--out", type=Path, default=OUT)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import ray

    started_here = args.url is None
    if started_here:
        url = start_local_stack(args.models)
    else:
        url = check_loopback(args.url)
        ray.init(address=args.ray_address, log_to_driver=False)
    try:
        wait_ready(url)
        mix = parse_mix(args.routes, url)
        routes = [name for name, weight in mix.items() for _ in range(weight)]
        options = Options(timeout_s=300, image_size="64x64", steps=4, max_tokens=16, music_seconds=1.0)
        traffic = Traffic(url, routes, options, args.pool)
        capacity = None
        if args.rate is None:
            traffic.closed_loop(args.capacity_users, min(30.0, args.capacity_seconds / 3))  # warm every route
            traffic.reset()
            capacity = traffic.closed_loop(args.capacity_users, args.capacity_seconds)
            capacity_routes = traffic.summary()
            traffic.reset()
            rate = args.fraction * capacity
            print(f"capacity {capacity:.2f} req/s of the mix; soaking at {rate:.2f} req/s", flush=True)
        else:
            rate, capacity_routes = args.rate, None
        seconds = args.minutes * 60
        warmup = args.warmup if args.warmup is not None else min(180.0, seconds / 5)
        stop = threading.Event()
        t0 = time.monotonic()
        samples = [take_sample(t0, traffic)]
        sender = threading.Thread(target=traffic.open_loop, args=(rate, seconds, stop), daemon=True)
        sender.start()
        next_at = t0 + args.interval
        while sender.is_alive():
            sender.join(max(0.0, next_at - time.monotonic()))
            if time.monotonic() >= next_at:
                samples.append(take_sample(t0, traffic))
                last = samples[-1]
                print(f"t={last['t_s']:.0f}s ok={sum(r['ok'] for r in last['requests'].values())} "
                      f"errors={sum(r['errors'] for r in last['requests'].values())} "
                      f"store={last['object_store_used_mb']} MiB load={last['loadavg']}", flush=True)
                next_at += args.interval
        traffic.executor.shutdown(wait=True)  # the last arrivals finish and count
        samples.append(take_sample(t0, traffic))
        routes_summary = traffic.summary()
        result = judge(samples, warmup, args.rss_tolerance, args.store_slack_mb, routes_summary)
    finally:
        if started_here:
            stop_stack()
        else:
            ray.shutdown()
    report = {
        "tool": "bench.soak", "command": rw.command("soak", argv),
        "date": rw.now(), "machine": rw.machine(memory_gb=round(psutil.virtual_memory().total / 1024**3, 1)),
        "config": {"minutes": args.minutes, "fraction": args.fraction, "capacity_rps": capacity, "rate_rps": rate,
                   "routes": mix, "interval_s": args.interval, "warmup_s": warmup,
                   "capacity_users": args.capacity_users, "capacity_seconds": args.capacity_seconds,
                   "rss_tolerance": args.rss_tolerance, "store_slack_mb": args.store_slack_mb,
                   "request_options": {k: v for k, v in vars(options).items() if k != "api_key"},
                   "stack": "configs/local.yaml, started by the script" if started_here else url},
        "capacity_routes": capacity_routes, "routes": routes_summary, "error_examples": traffic.examples,
        "result": result, "samples": samples,
    }
    rw.write(args.out, report)
    png = plot(report, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {png}: goals {result['goals']}; passed={result['passed']}", flush=True)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

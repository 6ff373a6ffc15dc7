"""Load shedding under overload, side by side with the same route unloaded, in one run.

    python -m bench overload [--routes images,transcribe] [--duration 30] [--factor 3]

Serves the local config's image and ASR models, one replica each (no autoscaling, so capacity
holds still) with a short bounded queue, and for each route runs the load tool three times:
one user, closed loop (the unloaded latency); enough users to keep every slot and queue place
full (capacity, requests/s); then open loop at `--factor` x capacity. Writes
docs/bench/overload.json: per route the unloaded p50, capacity, accepted p50/p99, 503 p50/p99
with their count and how many carried Retry-After, and the goals (503 p50 <= 100 ms and
p99 <= 500 ms; accepted p50 within 2x the unloaded p50).

The queue bound sets what accepted requests wait under overload: every place in the queue is
one more service time. Here each replica takes `--max-ongoing` requests at a time and queues
`--max-queued` more, about one request's worth of waiting per slot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from bench import report as rw  # noqa: E402
from bench.report import BENCH_DIR, ROOT  # noqa: E402
from bench.stack import local_stack  # noqa: E402
from graphs.app import build_app  # noqa: E402
from mmserve.config import BatchArgs, DeploymentArgs  # noqa: E402
from mmserve.config.app import AppArgs, load_app_args  # noqa: E402
from mmserve.tiny.catalog import build_all  # noqa: E402

OUT = BENCH_DIR / "overload.json"
TASK_OF_ROUTE = {"images": "image", "transcribe": "asr"}


def load_tool(url: str, route: str, out: Path, *extra: str, duration: float) -> dict:
    """One level of `python -m bench loadtest` on one route; its report's route summary."""
    subprocess.run([sys.executable, "-m", "bench.loadtest", "--url", url, "--routes", route,
                    "--duration", str(duration), "--warmup", "5", "--audio", "10s", "--image-size", "128x128",
                    "--out", str(out), *extra], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    level = json.loads(out.read_text())["levels"][0]
    return level["routes"][route] | {"late_starts": level["late_starts"]}


def p(summary: dict | None, key: str) -> float | None:
    return None if summary is None else summary[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", default="images,transcribe")
    parser.add_argument("--duration", type=float, default=30, help="measured seconds per level")
    parser.add_argument("--factor", type=float, default=3.0, help="offered load as a multiple of capacity")
    parser.add_argument("--max-ongoing", type=int, default=1)
    parser.add_argument("--max-queued", type=int, default=1)
    parser.add_argument("--models", type=Path, default=None, help="tiny model root (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=OUT)
    opts = parser.parse_args()
    routes = opts.routes.split(",")

    from ray import serve

    models = opts.models or Path(tempfile.mkdtemp(prefix="mmserve-bench-"))
    build_all(models, ["sd3", "funasr"])
    os.environ["MMSERVE_MODEL_ROOT"] = str(models)
    local = load_app_args(ROOT / "configs" / "local.yaml")
    served = []
    for task in sorted({TASK_OF_ROUTE[r] for r in routes}):
        model = local.default_model(task).model_copy(deep=True)
        model.deployment = DeploymentArgs(num_cpus=0, num_replicas=1, max_ongoing_requests=opts.max_ongoing,
                                          max_queued_requests=opts.max_queued)
        if model.batch is not None:
            model.batch = BatchArgs(max_batch_size=opts.max_ongoing)
        served.append(model)

    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="mmserve-overload-"))
    with local_stack(models) as stack:
        url = stack.url
        serve.run(build_app(AppArgs(models=served, gateway=local.gateway.without_partials())), name="overload",
                  route_prefix="/")
        for route in routes:
            unloaded = load_tool(url, route, tmp / "unloaded.json", "--users", "1", duration=opts.duration)
            slots = opts.max_ongoing + opts.max_queued
            capacity = load_tool(url, route, tmp / "capacity.json", "--users", str(slots), duration=opts.duration)
            rate = round(opts.factor * capacity["throughput_rps"], 3)
            overload = load_tool(url, route, tmp / "overload.json", "--rate", str(rate), "--users", "256",
                                 duration=opts.duration)
            shed = overload["error_latency_ms"].get("503")
            accepted_p50, unloaded_p50 = p(overload["latency_ms"], "p50"), p(unloaded["latency_ms"], "p50")
            results[route] = {
                "unloaded": {"p50_ms": unloaded_p50, "p99_ms": p(unloaded["latency_ms"], "p99"),
                             "requests": unloaded["requests"]},
                "capacity_rps": capacity["throughput_rps"],
                "overload": {"offered_rps": rate, "requests": overload["requests"], "accepted": overload["ok"],
                             "accepted_p50_ms": accepted_p50, "accepted_p99_ms": p(overload["latency_ms"], "p99"),
                             "errors": overload["errors"], "shed_503_p50_ms": p(shed, "p50"),
                             "shed_503_p99_ms": p(shed, "p99"), "shed_503_with_retry_after": overload["retry_after_503s"],
                             "late_starts": overload["late_starts"]},
                "goals": {
                    "503_p50_le_100ms": shed is not None and shed["p50"] <= 100,
                    "503_p99_le_500ms": shed is not None and shed["p99"] <= 500,
                    "accepted_p50_within_2x_unloaded": None if accepted_p50 is None or unloaded_p50 is None
                    else accepted_p50 <= 2 * unloaded_p50,
                    "only_503_errors": set(overload["errors"]) <= {"503"},
                },
            }
            print(route, json.dumps(results[route]), flush=True)
    report = {"tool": "bench.overload", "command": rw.command("overload"), "date": rw.now(),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_at_end": rw.loadavg()},
              "deployment": {"replicas": 1, "max_ongoing_requests": opts.max_ongoing,
                             "max_queued_requests": opts.max_queued, "factor": opts.factor,
                             "duration_s": opts.duration},
              "routes": results}
    rw.write(opts.out, report)
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()

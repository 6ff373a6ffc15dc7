"""Autoscaling under a load step, recorded by the load tool: replicas up, then down, no failures.

    python -m bench autoscaling [--levels 1,6,1] [--duration 40] [--models DIR]

Serves tiny SD3 (one request at a time per replica) with short scaling delays on a local Ray
cluster with its dashboard, and runs the load tool (`python -m bench loadtest --replicas`,
closed loop) through a low -> high -> low step while it polls Serve's replica counts. Writes
docs/bench/autoscaling.json and .png (latency and throughput per level, replicas over time).
"""

from __future__ import annotations

import argparse
import json
import os
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
from mmserve.config import AutoscalingArgs, BatchArgs, DeploymentArgs  # noqa: E402
from mmserve.config.app import AppArgs, load_app_args  # noqa: E402
from mmserve.tiny.catalog import build_all  # noqa: E402

OUT = BENCH_DIR / "autoscaling.json"
# One replica holds one request at a time (target 1): each extra concurrent user asks for one
# more replica, up to max_replicas. Delays are seconds here; serve_config.yaml uses minutes.
# Replicas push their load to the controller every 10 s (Ray's default), so reactions lag the
# step by up to that much; the look-back window must exceed it (Ray warns, and will refuse).
SCALING = AutoscalingArgs(min_replicas=1, max_replicas=2, target_ongoing_requests=1,
                          upscale_delay_s=2, downscale_delay_s=6, look_back_period_s=12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,6,1", help="users per step (closed loop)")
    parser.add_argument("--duration", type=float, default=40, help="seconds per step")
    parser.add_argument("--models", type=Path, default=None, help="tiny model root (default: a temp dir)")
    opts = parser.parse_args()

    from ray import serve

    models = opts.models or Path(tempfile.mkdtemp(prefix="mmserve-bench-"))
    build_all(models, ["sd3"])
    os.environ["MMSERVE_MODEL_ROOT"] = str(models)
    local = load_app_args(ROOT / "configs" / "local.yaml")
    image = local.default_model("image").model_copy(deep=True)
    image.batch = BatchArgs(max_batch_size=1)
    image.deployment = DeploymentArgs(num_cpus=0, max_ongoing_requests=2, max_queued_requests=-1,
                                      autoscaling=SCALING)

    with local_stack(models, dashboard=True) as stack:
        serve.run(build_app(AppArgs(models=[image], gateway=local.gateway.without_partials())), name="autoscale",
                  route_prefix="/")
        subprocess.run([sys.executable, "-m", "bench.loadtest", "--url", stack.url,
                        "--routes", "images", "--sweep", opts.levels, "--duration", str(opts.duration),
                        "--warmup", "0", "--image-size", "256x256", "--steps", "20", "--replicas",
                        "--replicas-interval", "1", "--dashboard", stack.dashboard_url,
                        "--out", str(OUT)], cwd=ROOT, check=True)
    report = json.loads(OUT.read_text())
    report["meta"]["command"] = rw.command("autoscaling")
    report["meta"]["autoscaling"] = SCALING.model_dump()
    rw.write(OUT, report)
    samples = report["replicas"]["samples"]
    running = [s["deployments"].get(f"autoscale/{image.name}", {}).get("running") for s in samples]
    print(json.dumps({
        "levels": [{"users": lv["users"], "ok": lv["totals"]["ok"], "errors": lv["totals"]["errors"],
                    "replicas_max": lv.get("replicas_max")} for lv in report["levels"]],
        "running_replicas_over_time": running}, indent=1))


if __name__ == "__main__":
    main()

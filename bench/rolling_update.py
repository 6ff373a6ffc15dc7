"""Zero-downtime updates, recorded: `serve deploy` of a changed config under steady load, 0 failures.

    python -m bench rolling-update [--models DIR] [--users 4] [--out docs/bench/rolling-update.json]

Starts a local Ray cluster with its dashboard in this process, deploys configs/local.yaml with the
real `serve deploy` CLI (REST to the dashboard, as in production; RAY_AUTH_MODE=token so the CLI
presents the cluster's token), drives 8 routes that reach every always-on model (`MIX`, sent with
the load tool's `bench.loadtest.routes`) from a few closed-loop client threads, and applies three
changes in turn, each by `serve deploy` of a modified copy of the config:

1. a changed model folder (sd3-medium pointed at a copy of its folder),
2. a changed batch size (sd3-medium, as `user_config` in the Serve config's `deployments:`),
3. a changed replica count (qwen2.5-7b-instruct `num_replicas` 1 -> 2).

A restarting change is done when the application is RUNNING again, every deployment has exactly
its target number of RUNNING replicas and none of the replicas from before is left; an in-place
one when the new user_config is applied with the same replicas. Any change to `args:` changes the
application's code version, so Serve replaces every replica of the app, gateway included (with
`max_surge_percent` from DeploymentArgs: the replacement starts, then the old replica drains).
Writes per change: requests in flight during it, failures by status and route (with messages),
the update's duration, which deployments were replaced. Exits 1 when any request failed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import requests  # noqa: E402
import yaml  # noqa: E402

from bench import report as rw  # noqa: E402
from bench.load import Sample, SteadyLoad  # noqa: E402
from bench.loadtest.payloads import Payloads  # noqa: E402
from bench.loadtest.routes import Options  # noqa: E402
from bench.report import BENCH_DIR, ROOT  # noqa: E402
from bench.stack import start_stack, stop_stack  # noqa: E402
from bench.wait import ready, wait_until  # noqa: E402

OUT = BENCH_DIR / "rolling-update.json"
LOCAL = ROOT / "configs" / "local.yaml"
# Routes that reach every always-on model of configs/local.yaml (music scales to zero, left out).
MIX = ["healthz", "images", "chat", "transcribe", "speech-whole", "chat-vlm", "speech-to-image", "describe-aloud"]


# The steady load of a rolling update: each client its share of `MIX`, small requests.
OPTIONS = Options(timeout_s=180, image_size="64x64", steps=2, max_tokens=8)


def rolling_load(base_url: str, routes: list[str], users: int = 3) -> SteadyLoad:
    """Closed-loop clients, each cycling through its share of `routes`, until stopped.

    Every request is recorded (route, start, end, status, error), so failures can be counted for
    any window, e.g. the span of one update."""
    return SteadyLoad(base_url, routes, users, Payloads(["zh", "en"]), OPTIONS, share=True)


def summarize(records: list[Sample]) -> dict:
    """Requests, failures by status and route, a few failure messages."""
    failed = [r for r in records if r.error is not None]
    by_status: dict[str, int] = {}
    by_route: dict[str, int] = {}
    for r in failed:
        by_status[str(r.status)] = by_status.get(str(r.status), 0) + 1
        by_route[r.route] = by_route.get(r.route, 0) + 1
    routes: dict[str, int] = {}
    for r in records:
        routes[r.route] = routes.get(r.route, 0) + 1
    return {"requests": len(records), "failed": len(failed), "failures_by_status": by_status,
            "failures_by_route": by_route, "requests_by_route": routes,
            "failure_examples": sorted({f"{r.route} {r.status}: {r.error}" for r in failed})[:10]}


# ---- Serve state, read the same way in the test (controller client) and here (REST) ----

def replica_ids(app: dict) -> dict[str, set[str]]:
    """{deployment: ids of its replicas in any state} from one application's Serve details."""
    return {name: {r["replica_id"] for r in dep.get("replicas", [])} for name, dep in app["deployments"].items()}


def expected_replicas(config: dict) -> dict[str, int]:
    """{deployment: replica count} the config asks for, for deployments with a fixed count."""
    args = config["applications"][0]["args"]
    fixed = {m["name"]: m.get("deployment", {}) for m in args["models"]}
    fixed["gateway"] = args.get("gateway", {}).get("deployment", {})
    return {name: dep.get("num_replicas", 1) for name, dep in fixed.items() if not dep.get("autoscaling")}


def settled(app: dict | None, expected: dict[str, int] | None = None) -> bool:
    """The app is RUNNING and each deployment has exactly its target number of replicas (the expected
    one where given: a rolling update can surge above it for a while), all RUNNING."""
    if app is None or app.get("status") != "RUNNING":
        return False
    for name, dep in app["deployments"].items():
        replicas = dep.get("replicas", [])
        target = (expected or {}).get(name, dep["target_num_replicas"])
        if dep.get("status") != "HEALTHY" or dep["target_num_replicas"] != target or len(replicas) != target or any(
                r["state"] != "RUNNING" for r in replicas):
            return False
    return True


def update_done(app: dict | None, old: dict[str, set[str]], expected: dict[str, int] | None = None) -> dict | None:
    """The app's details once settled with none of the replicas from before left (a restarting change)."""
    if settled(app, expected) and not any(replica_ids(app).get(name, set()) & ids for name, ids in old.items()):
        return app
    return None


def reconfigured(app: dict | None, deployment: str, user_config: dict,
                 expected: dict[str, int] | None = None) -> dict | None:
    """The app's details once settled with the new user_config applied (an in-place change: the replicas
    stay and reconfigure() runs)."""
    if settled(app, expected) and app["deployments"][deployment]["deployment_config"].get("user_config") == user_config:
        return app
    return None


# ---- the recorded run ----

def app_details(dashboard: str, name: str) -> dict | None:
    from bench.loadtest.replicas import ray_token

    token = ray_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = requests.get(f"{dashboard}/api/serve/applications/", headers=headers, timeout=10)
    resp.raise_for_status()
    return (resp.json().get("applications") or {}).get(name)


def entry(config: dict, model: str) -> dict:
    app = config["applications"][0]["args"]
    return next(m for m in app["models"] if m["name"] == model)


@dataclass
class Change:
    what: str
    config: dict
    in_place: str | None = None  # the deployment reconfigured without a restart, if that is the change
    user_config: dict | None = None


BATCH_USER_CONFIG = {"batch": {"max_batch_size": 2, "batch_wait_timeout_s": 0.05}}


def changes(base: dict, models: Path) -> list[Change]:
    """The three configs applied in turn, each building on the one before.

    The model folder and the replica count are `args:` changes: Serve replaces the app's replicas.
    The batch size goes the cheap way, as the deployment's `user_config` in the Serve config's
    `deployments:` section: the same replicas take it through `reconfigure()`, nothing restarts.
    (`batch:` in args would work too, at the cost of a rolling restart.)
    """
    moved = copy.deepcopy(base)
    copied = models / "sd3-moved"
    if not copied.exists():
        shutil.copytree(models / "sd3", copied)
    entry(moved, "sd3-medium")["runner"]["model"] = str(copied)
    batch = copy.deepcopy(moved)
    batch["applications"][0]["deployments"] = [{"name": "sd3-medium", "user_config": BATCH_USER_CONFIG}]
    scaled = copy.deepcopy(batch)
    entry(scaled, "qwen2.5-7b-instruct")["deployment"]["num_replicas"] = 2
    return [Change("model folder: sd3-medium -> a copy of its folder", moved),
            Change("batch size: sd3-medium max_batch_size 4 -> 2 (user_config)", batch, "sd3-medium",
                   BATCH_USER_CONFIG),
            Change("replica count: qwen2.5-7b-instruct 1 -> 2", scaled)]


def wait_for_update(change: Change, details, old: dict[str, set[str]], timeout_s: float) -> dict:
    """Poll Serve (`details()` -> the app's details) until the change is fully applied; the details then."""
    expected = expected_replicas(change.config)
    if change.in_place:
        return wait_until(lambda: reconfigured(details(), change.in_place, change.user_config, expected), timeout_s,
                          change.what)
    return wait_until(lambda: update_done(details(), old, expected), timeout_s, change.what)


def serve_deploy(config: dict, dashboard: str, workdir: Path, name: str) -> None:
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    subprocess.run([str(Path(sys.executable).parent / "serve"), "deploy", str(path), "-a", dashboard],
                   check=True, env=env, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=None, help="tiny model root (default: build in a temp dir)")
    parser.add_argument("--users", type=int, default=4, help="closed-loop client threads")
    parser.add_argument("--timeout", type=float, default=900, help="deadline per update, seconds")
    parser.add_argument("--out", type=Path, default=OUT)
    opts = parser.parse_args()

    from mmserve.tiny.catalog import build_all

    models = (opts.models or Path(tempfile.mkdtemp(prefix="mmserve-rolling-"))).resolve()
    build_all(models)
    os.environ["MMSERVE_MODEL_ROOT"] = str(models)
    workdir = Path(tempfile.mkdtemp(prefix="mmserve-rolling-cfg-"))
    # `serve deploy` through the dashboard starts Serve: this process only starts Ray (and picks the port).
    stack = start_stack(models, num_cpus=16, dashboard=True, serve_http=False, job_env=False)
    base = yaml.safe_load(LOCAL.read_text())
    base["http_options"]["port"] = stack.port
    # configs/local.yaml resolves relative model folders against $MMSERVE_MODEL_ROOT at build time.
    base["applications"][0]["runtime_env"] = {"env_vars": {"MMSERVE_MODEL_ROOT": str(models), "HF_HUB_OFFLINE": "1",
                                                           "TRANSFORMERS_OFFLINE": "1"}}
    entry(base, "qwen2.5-7b-instruct")["deployment"]["num_replicas"] = 1
    app_name = base["applications"][0]["name"]
    dashboard, url = stack.dashboard_url, stack.url
    report: dict = {"tool": "bench.rolling_update", "command": rw.command("rolling-update"),
                    "date": rw.now(), "machine": rw.machine(loadavg=rw.loadavg()), "routes": MIX,
                    "users": opts.users, "changes": []}
    load = None
    try:
        started = time.monotonic()
        serve_deploy(base, dashboard, workdir, "base")
        wait_until(lambda: settled(app_details(dashboard, app_name), expected_replicas(base)), opts.timeout,
                   "the first deploy", 2)
        wait_until(lambda: ready(url), opts.timeout, "readiness", 1)
        report["first_deploy_s"] = round(time.monotonic() - started, 1)
        load = rolling_load(url, MIX, users=opts.users).start()
        t0 = time.monotonic()
        wait_until(lambda: load.count_since(t0) >= 2 * len(MIX), opts.timeout, "steady load before the changes")
        report["before"] = summarize(load.between(t0, time.monotonic()))
        details = lambda: app_details(dashboard, app_name)  # noqa: E731
        for change in changes(base, models):
            old = replica_ids(details())
            start = time.monotonic()
            serve_deploy(change.config, dashboard, workdir, f"change-{len(report['changes'])}")
            after = replica_ids(wait_for_update(change, details, old, opts.timeout))
            end = time.monotonic()
            result = {"change": change.what, "update_s": round(end - start, 1), **summarize(load.between(start, end)),
                      "replicas_after": {k: len(v) for k, v in after.items()},
                      "replicas_replaced": sorted(k for k in after if not after[k] & old.get(k, set()))}
            report["changes"].append(result)
            print(json.dumps({k: result[k] for k in ("change", "update_s", "requests", "failed", "replicas_replaced")}),
                  flush=True)
        t1 = time.monotonic()
        wait_until(lambda: load.count_since(t1) >= 2 * len(MIX), opts.timeout, "steady load after the changes")
        load.stop()
        report["after"] = summarize(load.between(t1, time.monotonic()))
        report["whole_run"] = summarize(load.records)
    finally:
        if load is not None:
            load.stop(timeout_s=60)
        stop_stack()
    rw.write(opts.out, report)
    print(f"wrote {opts.out}: {report['whole_run']['requests']} requests, {report['whole_run']['failed']} failed")
    return 1 if report["whole_run"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""Zero-downtime updates: a config redeployed the way `serve deploy` does it, under steady load,
fails no request: a changed model folder, a changed batch size, a changed replica count.

The config goes to the controller as `serve deploy` sends it (ServeDeploySchema -> apply_config,
what the dashboard's REST handler calls), so Serve's declarative update path is the one tested:
an `args:` change replaces every replica of the app, gateway included, one deployment at a time;
a `user_config` change reconfigures the running replicas in place.

Checked to fail: with `max_surge_percent: 0` (Serve's own default: stop the old replica, then start
its replacement) failed requests came in 3 of 4 runs (503 "the gateway replica serving this request
went away"), so the test also samples each deployment's RUNNING replicas through every restarting
change; with surge off, sd3-medium and qwen fell to 0 in 2 runs of 2, the first change each time.
With `graceful_shutdown_timeout_s: 0` 8 requests failed.
"""

from __future__ import annotations

import copy
import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml

from bench.rolling_update import (
    changes,
    expected_replicas,
    replica_ids,
    rolling_load,
    settled,
    summarize,
    wait_for_update,
)
from bench.wait import wait_until
from tests.conftest import LOCAL_CONFIG

APP = "rolling"
MODELS = ("sd3-medium", "qwen2.5-7b-instruct")  # one batching model, one streaming; both tiny
DEADLINE_S = 900  # each update restarts every deployment; the test machine is shared and slow


def base_config(models: Path, http_url: str) -> dict:
    """configs/local.yaml cut to two models with absolute folders, as a one-app Serve config."""
    local = yaml.safe_load(LOCAL_CONFIG.read_text())
    args = copy.deepcopy(local["applications"][0]["args"])
    args["models"] = [m for m in args["models"] if m["name"] in MODELS]
    args["flows"] = {}
    args["gateway"]["realtime"].pop("partials_model")  # its streaming model is not among the two
    for m in args["models"]:
        m["runner"]["model"] = str(models / m["runner"]["model"])
        m["runner"].pop("adapters", None)
        m["runner"].pop("max_adapters_per_replica", None)
        m["runner"]["max_new_tokens" if "max_new_tokens" in m["runner"] else "default_steps"] = 4
        m["deployment"].pop("autoscaling", None)
        m["deployment"]["num_replicas"] = 1
    host, port = http_url.removeprefix("http://").split(":")
    return {"http_options": {"host": host, "port": int(port)},
            "applications": [{"name": APP, "route_prefix": "/", "import_path": "graphs.app:build_app",
                              "args": args}]}


def serve_deploy(config: dict) -> None:
    from ray.serve._private.api import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config))


def details() -> dict | None:
    from ray.serve._private.api import _get_global_client

    return _get_global_client().get_serve_details().get("applications", {}).get(APP)


@pytest.fixture
def models(tiny_models, tmp_path) -> Path:
    """A private copy of the two tiny model folders, so the test can move one."""
    for name in ("sd3", "qwen"):
        shutil.copytree(tiny_models / name, tmp_path / name)
    return tmp_path


class ServingFloor:
    """The fewest RUNNING replicas each deployment had while a change was applied, read from Serve
    every 0.1 s on a thread of its own. A zero is a stretch in which that deployment could serve
    nothing: what a surge (start the replacement, then stop the old replica) rules out. Replica
    start-up takes seconds here, so a restart in place is always seen."""

    def __init__(self):
        self.low: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="serving-floor", daemon=True)

    def __enter__(self) -> "ServingFloor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            app = details()
            for name, deployment in (app or {}).get("deployments", {}).items():
                serving = sum(r["state"] == "RUNNING" for r in deployment.get("replicas", []))
                self.low[name] = min(self.low.get(name, serving), serving)


def test_serve_deploy_of_a_changed_config_fails_no_request(ray_cluster, models):
    base = base_config(models, ray_cluster)
    serve_deploy(base)
    load = None
    try:
        wait_until(lambda: settled(details(), expected_replicas(base)), DEADLINE_S, "the first deploy")
        load = rolling_load(ray_cluster, ["images", "chat", "images", "healthz"], users=3).start()
        wait_until(lambda: load.count_since(0) >= 6, DEADLINE_S, "the first answers")
        windows, steps = {}, changes(base, models)
        for change in steps:
            old = replica_ids(details())
            sent_before, start = load.count_since(0), time.monotonic()
            with ServingFloor() as floor:
                serve_deploy(change.config)
                after = replica_ids(wait_for_update(change, details, old, DEADLINE_S))
            windows[change.what] = summarize(load.between(start, time.monotonic()))
            assert windows[change.what]["requests"], f"no request in flight during {change.what}"
            if change.in_place:  # reconfigured, not restarted
                assert after == old, change.what
            else:  # every replica of the app is new, and the new replica count holds
                assert all(not after[name] & old.get(name, set()) for name in after), change.what
                # and each deployment had a replica serving all along: the replacement ran before the old one went
                assert set(floor.low) == set(after) and min(floor.low.values()) >= 1, (change.what, floor.low)
                assert {n: len(ids) for n, ids in after.items()} == expected_replicas(change.config), change.what
            # Load kept flowing through the update and after it.
            wait_until(lambda n=sent_before + 4: load.count_since(0) >= n, DEADLINE_S, f"answers after {change.what}")
        load.stop()
        result = summarize(load.records)
        assert result["requests"] >= 20, result
        assert result["failed"] == 0, (result["failure_examples"], windows)
        assert details()["deployments"]["sd3-medium"]["deployment_config"]["user_config"] == steps[1].user_config
    finally:
        if load is not None:
            load.stop(timeout_s=60)
        from ray import serve

        serve.delete(APP)

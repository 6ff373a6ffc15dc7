"""Replica counts over time, from the Serve REST API of the Ray dashboard.

`GET <dashboard>/api/serve/applications/` lists every deployment's replicas and their states.
Ray 2.60 starts local clusters with token authentication, and the dashboard then answers 401
without `Authorization: Bearer <token>`. The token is the one the cluster was started with:
$RAY_AUTH_TOKEN, the file named by $RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token (where a new local
cluster writes it). The CLI equivalent is `RAY_AUTH_MODE=token serve status`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import requests

from bench.loadtest.safety import check_loopback


def ray_token() -> str | None:
    if token := os.environ.get("RAY_AUTH_TOKEN"):
        return token.strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def snapshot(dashboard_url: str, timeout_s: float = 5.0) -> dict[str, dict]:
    """{"app/deployment": {"running", "target", "states": {state: count}, "status"}}."""
    token = ray_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = requests.get(dashboard_url + "/api/serve/applications/", headers=headers, timeout=timeout_s)
    resp.raise_for_status()
    out: dict[str, dict] = {}
    for app_name, app in (resp.json().get("applications") or {}).items():
        for dep_name, dep in app.get("deployments", {}).items():
            states: dict[str, int] = {}
            for replica in dep.get("replicas", []):
                states[replica["state"]] = states.get(replica["state"], 0) + 1
            out[f"{app_name}/{dep_name}"] = {
                "running": states.get("RUNNING", 0), "target": dep.get("target_num_replicas"),
                "states": states, "status": dep.get("status"),
            }
    return out


class ReplicaPoller:
    """Polls every `interval_s` until stopped; failures are kept, not raised (the load goes on)."""

    def __init__(self, dashboard_url: str, origin: float, interval_s: float = 2.0):
        self.url = check_loopback(dashboard_url)
        self.origin, self.interval_s = origin, interval_s
        self.samples: list[dict] = []
        self.errors: list[str] = []
        self.running = True

    def poll_once(self) -> None:
        try:
            self.samples.append({"t_s": round(time.perf_counter() - self.origin, 3),
                                 "deployments": snapshot(self.url)})
        except (requests.RequestException, ValueError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}"[:300])

    def loop(self, sleep) -> None:
        while self.running:
            self.poll_once()
            sleep(self.interval_s)

    def report(self) -> dict:
        return {"source": self.url + "/api/serve/applications/", "interval_s": self.interval_s,
                "samples": self.samples, "errors": self.errors[:5], "error_count": len(self.errors)}

    def max_running(self, start_s: float, end_s: float) -> dict[str, int]:
        """Most RUNNING replicas per deployment seen between two run-relative times."""
        out: dict[str, int] = {}
        for sample in self.samples:
            if start_s <= sample["t_s"] <= end_s:
                for name, dep in sample["deployments"].items():
                    out[name] = max(out.get(name, 0), dep["running"])
        return out

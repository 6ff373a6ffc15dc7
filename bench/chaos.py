"""Faults under steady mixed load on a real multi-node cluster: which requests fail, with what
status, and how long until the route and the replica counts are back.

    python -m bench chaos [--config configs/local.yaml] [--users 4] [--models /tmp/mm_models]
                            [--faults model,gateway,node,controller] [--tasks asr,llm,...]

Starts a head and two worker nodes on this machine (bench/cluster.py), deploys the
config's application with every model kept off the head (`resources: {mm_worker: 0.01}`, so
Serve spreads the replicas over the two workers) and the gateway pinned to the head, runs a
closed-loop mixed load (bench.load's SteadyLoad: the load tool's routes and payloads, one
route per task), and injects
in turn:
  a. SIGKILL of the default model replica of every task (one at a time);
  b. SIGKILL of the gateway replica;
  c. SIGKILL of a whole worker node (its raylet, agents and every replica on it);
  d. SIGKILL of the Serve controller.
Per fault it records every failed request (status, route, whether it was in flight at the kill),
the time until the affected route answers again (a probe sends to it one request at a time from
the kill on), and the time until the replica counts are back, split into detection (kill -> new
replica started), model load and warm-up (the replica's "warmed up in X s" log line). Writes
docs/bench/chaos.json (with this command and the machine) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import requests
import yaml

from bench import report as rw
from bench.cluster import LocalCluster
from bench.load import Sample, SteadyLoad, failed, status_label
from bench.report import BENCH_DIR, ROOT

OUT = BENCH_DIR / "chaos.json"
APP = "mmserve"
GATEWAY = "gateway"
TASK_ROUTES = {"asr": "transcribe", "llm": "chat", "tts": "speech-whole", "image": "images", "vlm": "chat-vlm",
               "music": "music"}
WARMED = re.compile(r"warmed up in ([0-9.]+) s")


# ---- the app on the cluster --------------------------------------------------------------------

def spread_config(config_path: Path, model_root: Path) -> dict:
    """The config's app with every model off the head (custom resource `mm_worker`) and the gateway on it."""
    config = yaml.safe_load(config_path.read_text())
    (app,) = [a for a in config["applications"] if a["name"] == APP]
    args = app["args"]
    for model in args["models"]:
        model.setdefault("deployment", {})["resources"] = {"mm_worker": 0.01}
    args.setdefault("gateway", {}).setdefault("deployment", {})["resources"] = {"head": 0.01}
    app["runtime_env"] = {"env_vars": {"MMSERVE_MODEL_ROOT": str(model_root), "HF_HUB_OFFLINE": "1",
                                       "TRANSFORMERS_OFFLINE": "1"}}
    return {"proxy_location": "HeadOnly", "http_options": {"request_timeout_s": 120}, "applications": [app]}


def default_models(config: dict) -> dict[str, str]:
    """{task: the model a request without `model` goes to} (graphs.app.AppArgs's rule)."""
    from mmserve.config.app import AppArgs

    args = AppArgs.model_validate(config["applications"][0]["args"])
    return {task: args.default_model(task).name for task in {m.task for m in args.models}}


def running(cluster: LocalCluster) -> dict[str, list[dict]]:
    return {name: [r for r in replicas if r["state"] == "RUNNING"] for name, replicas in cluster.replicas(APP).items()}


def placement(cluster: LocalCluster) -> dict[str, list[str]]:
    return {name: sorted(cluster.node_name(r["node_id"]) or r["node_id"][:8] for r in replicas)
            for name, replicas in running(cluster).items()}


# ---- one fault -------------------------------------------------------------------------------

class Fault:
    """Kill something, then watch until the routes answer and the replica counts are back."""

    def __init__(self, cluster: LocalCluster, load: SteadyLoad, name: str, target: str, routes: list[str],
                 deployments: list[str] | None, deadline_s: float):
        self.cluster, self.load, self.name, self.target = cluster, load, name, target
        self.before = running(cluster)
        self.routes, self.deadline_s = routes, deadline_s
        self.deployments = deployments if deployments is not None else list(self.before)  # None: all
        self.killed_ids = set()

    def run(self, kill) -> dict:
        record = {"fault": self.name, "target": self.target}
        t0, wall0 = time.monotonic(), time.time()
        record.update(kill())
        probes = {route: SteadyLoad(self.load.base_url, [route], 1, self.load.payloads, self.load.options).start()
                  for route in self.routes}
        route_back: dict[str, float | None] = {route: None for route in self.routes}
        replicas_back, new_replicas = None, {}
        deadline = t0 + self.deadline_s
        while time.monotonic() < deadline and (None in route_back.values() or replicas_back is None):
            for route, probe in probes.items():
                if route_back[route] is None and (done := probe.answered_since(t0)):
                    route_back[route] = round(min(s.end for s in done) - t0, 2)
            if replicas_back is None:
                try:
                    now = running(self.cluster)
                except (requests.RequestException, ValueError):
                    now = None  # the dashboard may not answer while the controller restarts
                if now is not None and self._counts_back(now):
                    replicas_back = round(time.monotonic() - t0, 2)
                    new_replicas = self._new_replicas(now, wall0)
            time.sleep(0.5)
        for probe in probes.values():
            probe.stop()
        time.sleep(2)  # requests in flight at recovery finish (they are recorded by the load threads)
        samples = list(self.load.samples) + [s for p in probes.values() for s in p.samples]
        bad = failed(samples, t0)
        statuses: dict[str, int] = {}
        for sample in bad:
            label = status_label(sample)
            statuses[label] = statuses.get(label, 0) + 1
        record.update({
            "failed": len(bad), "failed_statuses": statuses,
            "failed_in_flight_at_kill": sum(s.start < t0 for s in bad),
            "failed_started_after_kill": sum(s.start >= t0 for s in bad),
            "failed_requests": [{**asdict(s), "start": round(s.start - t0, 2), "end": round(s.end - t0, 2)}
                                for s in bad],
            "requests_after_kill": sum(s.end >= t0 for s in samples),
            "in_flight_at_kill": {route: sum(s.start < t0 <= s.end for s in samples if s.route == route)
                                  for route in self.routes},  # answered or not: what a retry had to save
            "route_back_s": route_back, "replicas_back_s": replicas_back, "new_replicas": new_replicas,
            "placement_after": placement(self.cluster),
        })
        return record

    def _counts_back(self, now: dict[str, list[dict]]) -> bool:
        for name in self.deployments:
            before = len(self.before.get(name, []))
            replicas = now.get(name, [])
            if len(replicas) < before or any(r["replica_id"] in self.killed_ids for r in replicas):
                return False
        return True

    def _new_replicas(self, now: dict[str, list[dict]], wall0: float) -> dict[str, list[dict]]:
        """Per replacement replica: detection (kill -> actor started), then STARTING -> RUNNING split
        into model load and warm-up (from the replica's own log line)."""
        out: dict[str, list[dict]] = {}
        old = {r["replica_id"] for rs in self.before.values() for r in rs}
        for name in self.deployments:
            for replica in now.get(name, []):
                if replica["replica_id"] in old:
                    continue
                info = {"node": self.cluster.node_name(replica["node_id"]),
                        "started_after_kill_s": round(replica["start_time_s"] - wall0, 2),
                        "running_after_kill_s": round(time.time() - wall0, 2)}
                info["start_to_running_s"] = round(info["running_after_kill_s"] - info["started_after_kill_s"], 2)
                warmup = self._warmup_s(replica)
                info["warmup_s"] = warmup
                info["load_s"] = round(info["start_to_running_s"] - warmup, 2) if warmup is not None else None
                out.setdefault(name, []).append(info)
        return out

    def _warmup_s(self, replica: dict) -> float | None:
        path = self.cluster.replica_log(replica.get("log_file_path") or "")
        if path is None:
            return None
        found = WARMED.findall(path.read_text(errors="replace"))
        return float(found[-1]) if found else None


def kill_replica(cluster: LocalCluster, fault: Fault, deployment: str) -> dict:
    replica = fault.before[deployment][0]
    fault.killed_ids.add(replica["replica_id"])
    node = cluster.sigkill(replica["pid"])
    return {"deployment": deployment, "pid": replica["pid"], "node": node, "replica_id": replica["replica_id"]}


def kill_node(cluster: LocalCluster, fault: Fault, node: str) -> dict:
    node_id = cluster.nodes[node].node_id
    on_it = {name: [r for r in replicas if r["node_id"] == node_id] for name, replicas in fault.before.items()}
    fault.killed_ids.update(r["replica_id"] for replicas in on_it.values() for r in replicas)
    cluster.kill_node(node)
    return {"node": node, "replicas_on_node": {name: len(rs) for name, rs in on_it.items() if rs}}


def kill_controller(cluster: LocalCluster) -> dict:
    pid, _ = cluster.actor_pid("ServeController")
    return {"pid": pid, "node": cluster.sigkill(pid)}


# ---- the run ---------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml")
    parser.add_argument("--models", type=Path, default=Path(os.environ.get("MMSERVE_MODEL_ROOT", ROOT / ".models")))
    parser.add_argument("--users", type=int, default=4, help="closed-loop load threads")
    parser.add_argument("--faults", default="model,gateway,node,controller")
    parser.add_argument("--tasks", default=",".join(TASK_ROUTES), help="tasks whose model replica is killed (a)")
    parser.add_argument("--deadline", type=float, default=300, help="seconds to wait for recovery per fault")
    parser.add_argument("--out", type=Path, default=OUT)
    opts = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` still stops the cluster it started

    from mmserve.tiny.catalog import build_all

    build_all(opts.models)
    config = spread_config(opts.config, opts.models.resolve())
    defaults = default_models(config)
    tasks = [t for t in opts.tasks.split(",") if t in defaults]
    faults = opts.faults.split(",")
    report: dict = {"meta": {
        "command": rw.command("chaos"), "config": str(opts.config),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_before": os.getloadavg()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "users": opts.users}, "faults": []}
    with LocalCluster(env={"MMSERVE_MODEL_ROOT": str(opts.models.resolve()), "HF_HUB_OFFLINE": "1"}) as cluster:
        started = time.monotonic()
        cluster.deploy(config)
        cluster.wait_running(APP, timeout_s=900)
        report["meta"]["deploy_s"] = round(time.monotonic() - started, 1)
        report["meta"]["placement"] = placement(cluster)
        print("placement:", json.dumps(report["meta"]["placement"]), flush=True)
        load = SteadyLoad(cluster.http_url, [TASK_ROUTES[t] for t in tasks], opts.users).start()
        time.sleep(10)  # steady state before the first fault

        def run(name: str, target: str, routes: list[str], deployments: list[str], kill) -> None:
            try:
                fault = Fault(cluster, load, name, target, routes, deployments, opts.deadline)
                record = fault.run(lambda: kill(fault))
            except Exception as exc:  # noqa: BLE001 -- one fault that cannot run does not end the others
                record = {"fault": name, "target": target, "error": f"{type(exc).__name__}: {exc}"[:500]}
                report["faults"].append(record)
                print(record, flush=True)
                return
            report["faults"].append(record)
            print(row(record), flush=True)
            rw.write(opts.out, report)

        if "model" in faults:
            for task in tasks:
                model = defaults[task]
                run("a. model replica SIGKILL", f"{task}: {model}", [TASK_ROUTES[task]], [model],
                    lambda f, m=model: kill_replica(cluster, f, m))
        if "gateway" in faults:
            run("b. gateway replica SIGKILL", GATEWAY, ["healthz", TASK_ROUTES[tasks[0]]], [GATEWAY],
                lambda f: kill_replica(cluster, f, GATEWAY))
        if "node" in faults:
            victim = busiest_worker(cluster)
            hit = sorted(name for name, nodes in placement(cluster).items() if victim in nodes)
            routes = [TASK_ROUTES[t] for t in tasks if defaults[t] in hit]
            run("c. worker node SIGKILL", victim, routes or ["healthz"], hit, lambda f: kill_node(cluster, f, victim))
        if "controller" in faults:
            run("d. Serve controller SIGKILL", "ServeController", [TASK_ROUTES[t] for t in tasks], None,
                lambda f: kill_controller(cluster))
        report["load"] = summary(load.stop())
    report["meta"]["loadavg_after"] = os.getloadavg()
    rw.write(opts.out, report)
    print(table(report["faults"]))


def busiest_worker(cluster: LocalCluster) -> str:
    counts = {name: 0 for name in cluster.nodes if name != "head"}
    for nodes in placement(cluster).values():
        for node in nodes:
            if node in counts:
                counts[node] += 1
    return max(counts, key=counts.get)


def summary(samples: list[Sample]) -> dict:
    out: dict[str, dict] = {}
    for s in samples:
        entry = out.setdefault(s.route, {"requests": 0, "ok": 0})
        entry["requests"] += 1
        entry["ok"] += s.ok
    return out


HEADER = ("| fault | target | failed (statuses) | in flight / after kill | route back s | replicas back s "
          "| new replica: started s, load s, warm-up s |\n|---|---|---|---|---|---|---|")


def row(r: dict) -> str:
    statuses = ", ".join(f"{k}: {v}" for k, v in r["failed_statuses"].items()) or "-"
    back = ", ".join(f"{k} {v}" for k, v in r["route_back_s"].items())
    new = "; ".join(f"{name}@{i['node']}: {i['started_after_kill_s']}, "
                    f"{i['load_s'] if i['load_s'] is not None else i['start_to_running_s']}, {i['warmup_s'] or '-'}"
                    for name, infos in r["new_replicas"].items() for i in infos) or "-"
    where = r.get("node", "")
    return (f"| {r['fault']} | {r['target']}{' @' + where if where and where != r['target'] else ''} | "
            f"{r['failed']} ({statuses}) | {r['failed_in_flight_at_kill']} / {r['failed_started_after_kill']} | "
            f"{back} | {r['replicas_back_s']} | {new} |")


def table(records: list[dict]) -> str:
    return "\n".join([HEADER] + [row(r) for r in records if "error" not in r])


if __name__ == "__main__":
    main()

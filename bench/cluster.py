"""A real multi-node Ray cluster on one machine: a head and worker nodes, each its own raylet.

    python -m bench cluster [--workers 2]     # prints the addresses, Ctrl-C stops it

Each node is one `ray start --block` process in a process group of its own; killing a node
(`kill_node`) SIGKILLs that group and every process below it (its raylet, agents and workers, i.e.
the replicas on it; workers run in sessions of their own, so they are found from /proc), and
nothing of any other Ray cluster on the machine. `sigkill` refuses a pid not started by a node. Every port is picked free, the temp dir is the
cluster's own (so `/tmp/ray/ray_current_cluster` is not overwritten) and a fresh auth token is
generated per cluster: several engineers' clusters coexist on one machine.

Workers carry a custom resource named after them (`{"node_a": 1}`, `{"node_b": 1}`), a shared
`{"mm_worker": 1}` and logical GPUs, so a deployment is pinned to one node with
`resources: {node_a: 0.01}` or kept off the head with `resources: {mm_worker: 0.01}`. Apps are
deployed the way `serve deploy` does it, through the head's dashboard (PUT /api/serve/applications/):
no Ray driver runs in the calling process, which may therefore hold a Ray connection of its own.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import requests

from bench.report import ROOT
from bench.stack import free_port
from bench.wait import wait_until
from gateway.proxy_guard import IMPORT_PATH

HOST = "127.0.0.1"
# Note: `ray start` swaps --node-ip-address=127.0.0.1 for the machine's own address
# (ray._private.services.resolve_ip_for_localhost) in every Ray process, so the nodes' GCS, raylet
# and object manager ports listen there; the dashboard and Serve's HTTP proxy stay on 127.0.0.1.
RAY = str(Path(sys.executable).with_name("ray"))


@dataclass
class NodeSpec:
    name: str
    num_cpus: float = 4
    num_gpus: int = 1
    resources: dict[str, float] = field(default_factory=dict)


@dataclass
class Node:
    spec: NodeSpec
    process: subprocess.Popen
    node_id: str | None = None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def parent_pid(pid: int) -> int:
    """0 when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def started_at(pid: int) -> str | None:
    """The process's start time (clock ticks since boot): tells a pid apart from a reused one."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def kill_if_same(processes: dict[int, str | None]) -> None:
    """SIGKILL each pid that is still the process it was when listed."""
    for pid, start in processes.items():
        if start is not None and started_at(pid) == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def descendants(root: int) -> list[int]:
    """Every process below `root` (children first found, then theirs), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            children.setdefault(parent_pid(int(entry.name)), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def default_workers(count: int = 2) -> list[NodeSpec]:
    names = [f"node_{chr(ord('a') + i)}" for i in range(count)]
    return [NodeSpec(name, resources={name: 1, "mm_worker": 1}) for name in names]


class LocalCluster:
    """Head (Serve controller, HTTP proxy, dashboard) plus worker nodes, all on 127.0.0.1."""

    def __init__(self, workers: list[NodeSpec] | None = None, head: NodeSpec | None = None,
                 env: dict[str, str] | None = None, log_dir: Path | None = None):
        self.head_spec = head or NodeSpec("head", num_cpus=2, num_gpus=0, resources={"head": 1})
        self.worker_specs = workers if workers is not None else default_workers()
        self.temp_dir = Path(tempfile.mkdtemp(prefix="mmray-", dir="/tmp"))  # short: socket paths
        self.log_dir = log_dir or self.temp_dir
        self.token = secrets.token_hex(32)
        self._taken: set[int] = set()
        self.gcs_port, self.dashboard_port, self.http_port = self._ports(3)
        self.env = {**os.environ, **(env or {}), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                    "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT),
                    "RAY_raylet_start_wait_time_s": "300",  # 2 shared cores under load start slowly
                    "RAY_DASHBOARD_STARTUP_TIMEOUT_S": "300"}
        self.env.pop("RAY_ADDRESS", None)
        if (ROOT / "graphs" / "proxy_guard.py").exists():  # a gateway replica dying is a 503 at the proxy
            self.env.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", IMPORT_PATH)
        self.nodes: dict[str, Node] = {}

    def _ports(self, count: int) -> list[int]:
        """`count` free ports, distinct from each other and from every port this cluster was given."""
        ports: list[int] = []
        while len(ports) < count:
            port = free_port()
            if port not in self._taken:
                self._taken.add(port)
                ports.append(port)
        return ports

    # ---- addresses --------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{HOST}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{HOST}:{self.dashboard_port}"

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    # ---- life cycle -------------------------------------------------------------------------
    def start(self, timeout_s: float = 300) -> Self:
        try:
            self._start_node(self.head_spec, head=True)
            wait_until(self._head_up, timeout_s, "the head's dashboard")
            for spec in self.worker_specs:  # one at a time: a node names its sockets after those already there
                self._start_node(spec)
                self.wait_nodes(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, spec: NodeSpec, head: bool = False) -> Node:
        ports = iter(self._ports(8))
        args = [RAY, "start", "--block", "--disable-usage-stats", f"--node-ip-address={HOST}",
                f"--num-cpus={spec.num_cpus}", f"--num-gpus={spec.num_gpus}",
                f"--resources={json.dumps(spec.resources)}",
                f"--node-manager-port={next(ports)}", f"--object-manager-port={next(ports)}",
                f"--metrics-export-port={next(ports)}", f"--runtime-env-agent-port={next(ports)}",
                f"--dashboard-agent-listen-port={next(ports)}", f"--dashboard-agent-grpc-port={next(ports)}",
                "--object-store-memory=200000000"]
        if head:
            args += ["--head", f"--port={self.gcs_port}", f"--temp-dir={self.temp_dir}",
                     "--include-dashboard=true", f"--dashboard-host={HOST}", f"--dashboard-port={self.dashboard_port}",
                     f"--ray-client-server-port={next(ports)}"]
        else:
            args += [f"--address={self.address}"]
        with open(self.log_dir / f"{spec.name}.log", "ab") as log:
            process = subprocess.Popen(args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)  # its own process group: kill_node hits only it
        node = self.nodes["head" if head else spec.name] = Node(spec, process)
        return node

    def stop(self, timeout_s: float = 10) -> None:
        """SIGTERM every node (ray start --block then stops its processes), SIGKILL what is left."""
        left = {pid: started_at(pid) for node in self.nodes.values() for pid in descendants(node.process.pid)}
        for node in reversed(list(self.nodes.values())):
            self._signal(node, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for node in self.nodes.values():
            try:
                node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(node, signal.SIGKILL)
        kill_if_same(left)  # orphans (workers are in sessions of their own)
        self.nodes.clear()

    def kill_node(self, name: str) -> None:
        """SIGKILL one node: its `ray start`, raylet, agents and every worker (replica) on it."""
        node = self.nodes[name]
        left = {pid: started_at(pid) for pid in descendants(node.process.pid)}
        self._signal(node, signal.SIGKILL)
        kill_if_same(left)
        node.process.wait(30)

    def restart_node(self, name: str, timeout_s: float = 300) -> None:
        self._start_node(self.nodes[name].spec)
        self.wait_nodes(timeout_s)

    def owner(self, pid: int) -> str | None:
        """The name of this cluster's node that started `pid` (None: not ours). Ray's workers run in
        sessions of their own, so ownership is the parent chain up to the node's `ray start`."""
        roots = {node.process.pid: name for name, node in self.nodes.items()}
        while pid > 1:
            if pid in roots:
                return roots[pid]
            pid = parent_pid(pid)
        return None

    def sigkill(self, pid: int) -> str:
        """SIGKILL one process of this cluster (a replica, the controller); refuses any other pid."""
        node = self.owner(pid)
        if node is None:
            raise PermissionError(f"pid {pid} is not a process of this cluster")
        os.kill(pid, signal.SIGKILL)
        return node

    @staticmethod
    def _signal(node: Node, sig: int) -> None:
        try:
            os.killpg(node.process.pid, sig)  # pgid == pid: start_new_session
        except ProcessLookupError:
            pass

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- state, through the dashboard -------------------------------------------------------
    def get(self, path: str, timeout_s: float = 10) -> dict:
        resp = requests.get(self.dashboard_url + path, headers=self.headers, timeout=timeout_s)
        resp.raise_for_status()
        return resp.json()

    def _head_up(self) -> bool:
        if not self.nodes["head"].alive:
            raise RuntimeError(f"ray start --head exited; see {self.log_dir}/head.log")
        try:
            self.get("/api/v0/nodes")
            return True
        except (requests.RequestException, ValueError):
            return False

    def alive_nodes(self) -> list[dict]:
        """Alive nodes from the state API: node_id, resources_total, ..."""
        result = self.get("/api/v0/nodes?limit=100&detail=1")["data"]["result"]["result"]
        return [n for n in result if n["state"] == "ALIVE"]

    def wait_nodes(self, timeout_s: float = 300) -> None:
        """Until every started node is alive; records each node's id (found by its own resource)."""
        def all_alive() -> bool:
            alive = self.alive_nodes()
            for node in self.nodes.values():
                if not node.alive:
                    raise RuntimeError(f"ray start for {node.spec.name} exited; see {self.log_dir}/{node.spec.name}.log")
                match = [n for n in alive if node.spec.name in n.get("resources_total", {})]
                node.node_id = match[0]["node_id"] if match else None
            return all(node.node_id for node in self.nodes.values())

        wait_until(all_alive, timeout_s, f"{len(self.nodes)} alive nodes")

    def node_name(self, node_id: str) -> str | None:
        return next((name for name, node in self.nodes.items() if node.node_id == node_id), None)

    def deploy(self, config: dict) -> None:
        """`serve deploy` of a Serve config dict (proxy_location, http_options, applications)."""
        config = {**config, "http_options": {**config.get("http_options", {}), "host": HOST, "port": self.http_port}}
        config.setdefault("proxy_location", "HeadOnly")  # one node per machine would bind the port once only
        resp = requests.put(self.dashboard_url + "/api/serve/applications/", json=config, headers=self.headers,
                            timeout=60)
        if not resp.ok:
            raise RuntimeError(f"serve deploy answered {resp.status_code}: {resp.text[:2000]}")

    def serve_details(self) -> dict:
        return self.get("/api/serve/applications/")

    def replicas(self, app: str) -> dict[str, list[dict]]:
        """{deployment: [replica details: replica_id, state, pid, node_id, actor_id, start_time_s, ...]}."""
        deployments = (self.serve_details().get("applications") or {}).get(app, {}).get("deployments", {})
        return {name: dep.get("replicas", []) for name, dep in deployments.items()}

    def app_status(self, app: str) -> str | None:
        return ((self.serve_details().get("applications") or {}).get(app) or {}).get("status")

    def wait_running(self, app: str, timeout_s: float = 300) -> None:
        def running() -> bool:
            status = self.app_status(app)
            if status == "DEPLOY_FAILED":
                raise RuntimeError(f"{app} failed to deploy: {self.serve_details()['applications'][app]}")
            return status == "RUNNING"

        wait_until(running, timeout_s, f"application {app} RUNNING")

    def actor_pid(self, class_name: str) -> tuple[int, str]:
        """(pid, node_id) of the alive actor of a class (e.g. ServeController), from the state API."""
        query = (f"/api/v0/actors?limit=100&detail=1&filter_keys=class_name&filter_predicates=%3D"
                 f"&filter_values={class_name}&filter_keys=state&filter_predicates=%3D&filter_values=ALIVE")
        actors = self.get(query)["data"]["result"]["result"]
        if not actors:
            raise LookupError(f"no alive {class_name} actor")
        return int(actors[0]["pid"]), actors[0].get("node_id")

    def replica_log(self, log_file_path: str) -> Path | None:
        """A replica's log file (its path is relative to the logs folder of the node it ran on)."""
        matches = sorted(self.temp_dir.glob(f"session_*/logs/{log_file_path.lstrip('/')}"))
        return matches[-1] if matches else None


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    opts = parser.parse_args()
    with LocalCluster(default_workers(opts.workers)) as cluster:
        print(f"ray address {cluster.address}\ndashboard {cluster.dashboard_url}\nhttp (after deploy) "
              f"{cluster.http_url}\nnodes {[(n, node.node_id) for n, node in cluster.nodes.items()]}\n"
              f"export RAY_AUTH_MODE=token RAY_AUTH_TOKEN={cluster.token}", flush=True)
        try:
            while all(node.alive for node in cluster.nodes.values()):
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

"""A real multi-node cluster on this machine (head + 2 worker nodes, bench/cluster.py):
replicas land on different nodes, and faults under steady load fail no request: a call that was on a
killed replica or node when it died is sent again (graphs/stages.py) and answered by the survivor.

The cluster runs in `ray start` processes of its own and the app is deployed the way `serve
deploy` does it, through the head's dashboard; this test process never connects to Ray as a driver,
so it cannot clash with the session `ray_cluster` fixture (one driver connection per process) when
both run in one pytest session, and the faults it injects (SIGKILL of a replica, of the Serve
controller, of a whole worker node) reach only processes of its own cluster.
"""

from __future__ import annotations

import time

import psutil
import pytest

from bench.cluster import LocalCluster
from bench.load import SteadyLoad, failed, status_label
from bench.wait import wait_until
from graphs.stages import RESENT
from mmserve.config import DeploymentArgs
from mmserve.config.app import AppArgs, load_app_args
from tests.conftest import LOCAL_CONFIG

APP = "mn"
ASR = "paraformer"
USERS = 3


def wait_for(condition, timeout_s: float, what: str, interval_s: float = 0.5):
    return wait_until(condition, timeout_s, what, interval_s, error=AssertionError)


def app_config(tiny_models) -> dict:
    """Paraformer with one replica per worker node (each worker has mm_worker: 1) and the gateway on the head."""
    local = load_app_args(LOCAL_CONFIG)
    asr = local.model(ASR).model_copy(update={"deployment": DeploymentArgs(
        num_cpus=0.2, num_replicas=2, resources={"mm_worker": 1}, max_queued_requests=32)})
    gateway = local.gateway.without_partials().model_copy(update={"deployment": local.gateway.deployment.model_copy(
        update={"num_cpus": 0, "resources": {"head": 0.01}})})
    args = AppArgs(models=[asr], gateway=gateway).model_dump(mode="json", exclude_unset=True)
    return {"proxy_location": "HeadOnly", "http_options": {"request_timeout_s": 60}, "applications": [{
        "name": APP, "route_prefix": "/", "import_path": "graphs.app:build_app", "args": args,
        "runtime_env": {"env_vars": {"MMSERVE_MODEL_ROOT": str(tiny_models), "HF_HUB_OFFLINE": "1",
                                     "TRANSFORMERS_OFFLINE": "1"}}}]}


@pytest.fixture(scope="module")
def cluster(tiny_models):
    with LocalCluster(env={"MMSERVE_MODEL_ROOT": str(tiny_models), "HF_HUB_OFFLINE": "1"}) as cluster:
        cluster.deploy(app_config(tiny_models))
        cluster.wait_running(APP, timeout_s=300)
        yield cluster


def running(cluster: LocalCluster, deployment: str) -> list[dict]:
    return [r for r in cluster.replicas(APP).get(deployment, []) if r["state"] == "RUNNING"]


def assert_none_failed(samples) -> None:
    """Every request answered 200: with a survivor to send it to, a call the dead replica held is
    sent again, so not even a 503 is allowed (with the resend switched off, that call fails)."""
    bad = failed(samples, 0)
    assert not bad, f"{len(bad)} requests failed: " + "; ".join(f"{status_label(s)} {s.error}" for s in bad[:5])


def resent_calls(cluster: LocalCluster) -> int:
    """How often the gateway logged sending a call again because the replica holding it died."""
    logs = (cluster.temp_dir / "session_latest" / "logs" / "serve").glob("*gateway*.log")
    return sum(path.read_text(errors="replace").count(RESENT) for path in logs)


def kill_while_busy(pid: int, kill) -> None:
    """`kill()` once the replica process `pid` is working on a request (it used the CPU for at least
    a fifth of a 50 ms window; an idle replica uses next to none), so a call is on it when it dies."""
    process = psutil.Process(pid)

    def busy() -> bool:
        before = sum(process.cpu_times()[:2])
        time.sleep(0.05)  # the window the CPU rate is measured over, not a wait for some state
        return sum(process.cpu_times()[:2]) - before >= 0.01

    wait_for(busy, 60, f"a request in flight on pid {pid}", interval_s=0)
    kill()


def test_replicas_land_on_the_nodes_their_resources_name(cluster):
    asr_nodes = {cluster.node_name(r["node_id"]) for r in running(cluster, ASR)}
    assert asr_nodes == {"node_a", "node_b"}, "one paraformer replica on each worker node"
    gateways = running(cluster, "gateway")
    assert gateways and {cluster.node_name(r["node_id"]) for r in gateways} == {"head"}
    for replica in running(cluster, ASR) + gateways:
        assert cluster.owner(replica["pid"]) == cluster.node_name(replica["node_id"]), "a node's processes are its own"


def test_serve_controller_death_drops_no_request(cluster):
    load = SteadyLoad(cluster.http_url, ["transcribe"], USERS).start()
    wait_for(lambda: len(load.answered_since(0)) >= 3, 60, "steady load")
    old_pid, _ = cluster.actor_pid("ServeController")
    cluster.sigkill(old_pid)
    killed = time.monotonic()

    def new_controller_serving():
        try:
            return cluster.actor_pid("ServeController")[0] != old_pid and cluster.app_status(APP) == "RUNNING"
        except (LookupError, OSError, ValueError):
            return False

    wait_for(new_controller_serving, 120, "a new Serve controller")
    restarted = time.monotonic()
    wait_for(lambda: len(load.answered_since(restarted)) >= 3, 60, "requests after the restart")
    samples = load.stop()
    assert not failed(samples, 0), [status_label(s) + f" {s.error}" for s in failed(samples, 0)][:5]
    assert len(load.answered_since(killed)) >= 3


def test_sigkill_of_a_busy_model_replica_fails_no_request(cluster):
    (victim,) = [r for r in running(cluster, ASR) if cluster.node_name(r["node_id"]) == "node_b"]
    resent = resent_calls(cluster)
    load = SteadyLoad(cluster.http_url, ["transcribe"], USERS).start()
    wait_for(lambda: len(load.answered_since(0)) >= 3, 60, "steady load")
    kill_while_busy(victim["pid"], lambda: cluster.sigkill(victim["pid"]))
    killed = time.monotonic()
    wait_for(lambda: resent_calls(cluster) > resent, 60, "the gateway sending the killed replica's call again")
    wait_for(lambda: len(load.answered_since(killed)) >= 3, 60, "the route answering after the kill")
    wait_for(lambda: len(running(cluster, ASR)) == 2
             and victim["replica_id"] not in {r["replica_id"] for r in running(cluster, ASR)},
             240, "a replacement replica RUNNING")
    samples = load.stop()
    assert_none_failed(samples)


def test_killing_a_busy_worker_node_fails_no_request(cluster):
    survivor = {r["replica_id"] for r in running(cluster, ASR) if cluster.node_name(r["node_id"]) == "node_a"}
    assert survivor, "a paraformer replica on node_a"
    (doomed,) = [r for r in running(cluster, ASR) if cluster.node_name(r["node_id"]) == "node_b"]
    resent = resent_calls(cluster)
    load = SteadyLoad(cluster.http_url, ["transcribe"], USERS).start()
    wait_for(lambda: len(load.answered_since(0)) >= 3, 60, "steady load")
    kill_while_busy(doomed["pid"], lambda: cluster.kill_node("node_b"))
    killed = time.monotonic()
    wait_for(lambda: resent_calls(cluster) > resent, 60, "the gateway sending the dead node's call again")
    wait_for(lambda: len(load.answered_since(killed)) >= 10, 90, "answers after the node died")
    wait_for(lambda: {r["replica_id"] for r in running(cluster, ASR)} == survivor, 120,
             "Serve dropping the dead node's replica")
    after = time.monotonic()
    wait_for(lambda: len(load.answered_since(after)) >= 5, 60, "answers from the surviving replica alone")
    samples = load.stop()
    assert_none_failed(samples)

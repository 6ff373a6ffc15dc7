"""A replica that dies mid-request is retried or a 503, never a 500; a stuck stage is a 504 naming it."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from ray import serve

from graphs.app import build_app
from mmserve.catalog import ModelArgs
from mmserve.config import DeploymentArgs
from mmserve.config.app import AppArgs
from mmserve.config.gateway import GatewayArgs, StageDeadlines
from tests.helpers import wait_until

LONG = 2500  # tokens: ~10 s of work for the tiny LLM on this machine
LONGEST = 6000  # ~30 s


def chat_model(tiny_models, replicas: int) -> ModelArgs:
    return ModelArgs.model_validate({
        "name": "chat", "runner": {"family": "transformers-llm", "model": str(tiny_models / "qwen"), "device": "cpu",
                                   "max_new_tokens": LONGEST},
        "deployment": DeploymentArgs(num_cpus=0, num_replicas=replicas, max_ongoing_requests=1, max_queued_requests=4,
                                     warmup=False)})


@pytest.fixture(scope="module")
def two_chat_replicas(ray_cluster, tiny_models):
    args = AppArgs(models=[chat_model(tiny_models, 2)], gateway=GatewayArgs(deployment=DeploymentArgs(num_cpus=0)))
    serve.run(build_app(args), name="faults", route_prefix="/faults")
    yield ray_cluster + "/faults"
    serve.delete("faults")


@pytest.fixture(scope="module")
def short_llm_deadline(ray_cluster, tiny_models):
    gateway = GatewayArgs(deployment=DeploymentArgs(num_cpus=0), stage_deadlines_s=StageDeadlines(llm=2))
    serve.run(build_app(AppArgs(models=[chat_model(tiny_models, 1)], gateway=gateway)), name="deadline",
              route_prefix="/deadline")
    yield ray_cluster + "/deadline"
    serve.delete("deadline")


def long_chat(stream: bool = False, tokens: int = LONG) -> dict:
    return {"model": "chat", "messages": [{"role": "user", "content": "tell me everything"}], "max_tokens": tokens,
            "temperature": 0.0, "stream": stream}  # greedy: the tiny random model never picks its end token


def post_long_chat(url: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=long_chat(), timeout=600)


def replica_pids(app: str, deployment: str) -> list[int]:
    from ray._private.state import actors

    return [a["Pid"] for a in actors().values()
            if a["ActorClassName"] == f"ServeReplica:{app}:{deployment}" and a["State"] == "ALIVE"]


def wait_for_two_running_chat_replicas() -> None:
    """Both replicas serving, not just alive: a replacement still loading its model burns CPU, and
    `busy_replica` would take it for the one doing the work."""
    def running() -> bool:
        states = serve.status().applications["faults"].deployments["chat"].replica_states
        return states.get("RUNNING", 0) == 2 and len(states) == 1 and len(replica_pids("faults", "chat")) == 2

    wait_until(running, 180, "two running chat replicas")


def busy_replica(app: str, deployment: str) -> int:
    """The replica doing the work: the one whose CPU time grows (the others idle)."""
    procs = [psutil.Process(pid) for pid in wait_until(lambda: replica_pids(app, deployment), 60, "replicas")]
    start = {p.pid: sum(p.cpu_times()[:2]) for p in procs}

    def busy():
        return next((p.pid for p in procs if sum(p.cpu_times()[:2]) - start[p.pid] > 0.5), None)

    return wait_until(busy, 120, "a replica working on the request")


def kill_the_busy_replica(app: str, deployment: str) -> int:
    pid = busy_replica(app, deployment)
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_replica_killed_mid_request_is_retried_on_another(two_chat_replicas):
    wait_for_two_running_chat_replicas()
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(post_long_chat, two_chat_replicas)
        killed = kill_the_busy_replica("faults", "chat")
        response = sent.result()
    assert response.status_code == 200, response.text  # sent once more, to the surviving replica
    assert response.json()["usage"]["completion_tokens"] > 0
    wait_until(lambda: killed not in replica_pids("faults", "chat"), 120, "Ray to mark the killed replica dead")


def test_a_replica_killed_mid_stream_ends_it_with_a_retryable_error_event(two_chat_replicas):
    wait_for_two_running_chat_replicas()
    events = []
    with httpx.stream("POST", two_chat_replicas + "/v1/chat/completions", json=long_chat(stream=True),
                      timeout=600) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: ") and '"content"' in line)
        kill_the_busy_replica("faults", "chat")  # output has left: the stream cannot be replayed
        events = [first, *(line for line in lines if line.startswith("data: "))]
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2].removeprefix("data: "))["error"]
    assert error["code"] == "replica_unavailable" and error["stage"] == "llm", error


def test_a_stuck_stage_answers_504_naming_it_within_its_deadline(short_llm_deadline):
    start = time.monotonic()
    response = httpx.post(short_llm_deadline + "/v1/chat/completions", json=long_chat(tokens=LONGEST), timeout=600)
    elapsed = time.monotonic() - start
    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["code"] == "stage_timeout" and error["stage"] == "llm", error
    assert elapsed < 2 + 10, elapsed  # the deadline (2 s), not the minute-long generation or request_timeout_s


def test_a_gateway_replica_killed_mid_request_is_a_503_not_a_500(two_chat_replicas):
    """Serve's proxy would answer a bare 500; gateway.proxy_guard (loaded into the proxy) answers."""
    wait_for_two_running_chat_replicas()
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(post_long_chat, two_chat_replicas)
        busy_replica("faults", "chat")  # the request is being served, so its gateway replica holds it
        os.kill(wait_until(lambda: replica_pids("faults", "gateway"), 60, "the gateway replica")[0], signal.SIGKILL)
        response = sent.result()
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] and response.json()["error"]["code"] == "replica_unavailable"

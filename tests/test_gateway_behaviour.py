"""Auth on and off, and fast 503 + Retry-After when a bounded queue overflows."""

from __future__ import annotations

import asyncio
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from ray import serve

from gateway.auth import authorized, configured_keys
from graphs.app import build_app
from mmserve.config import DeploymentArgs
from mmserve.config.app import AppArgs, load_app_args
from mmserve.config.gateway import GatewayArgs
from tests.conftest import LOCAL_CONFIG
from tests.helpers import wait_until


@pytest.fixture(scope="module")
def keyed_gateway(ray_cluster):
    """A gateway alone, with a key configured: auth is the gateway's job, no model is needed."""
    args = AppArgs(gateway=GatewayArgs(api_keys=["sk-test-1"], deployment=DeploymentArgs(num_cpus=0)))
    serve.run(build_app(args), name="auth", route_prefix="/auth")
    yield ray_cluster + "/auth"
    serve.delete("auth")


def test_health_is_open_but_everything_else_needs_the_key(keyed_gateway):
    assert httpx.get(keyed_gateway + "/healthz").status_code == 200
    ready = httpx.get(keyed_gateway + "/readyz", timeout=30)  # no model to wait for
    assert ready.status_code == 200 and ready.json()["waiting_for"] == []
    missing = httpx.get(keyed_gateway + "/v1/models")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    wrong = httpx.get(keyed_gateway + "/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = httpx.get(keyed_gateway + "/v1/models", headers={"Authorization": "Bearer sk-test-1"})
    assert ok.status_code == 200 and ok.json()["data"] == []


def test_unserved_task_is_404_with_the_key(keyed_gateway):
    resp = httpx.post(keyed_gateway + "/v1/images/generations", json={"prompt": "cat"},
                      headers={"Authorization": "Bearer sk-test-1"})
    assert resp.status_code == 404


def test_keys_from_config_and_environment(monkeypatch):
    monkeypatch.setenv("MMSERVE_API_KEYS", "k2, k3")
    keys = configured_keys(GatewayArgs(api_keys=["k1"]))
    assert keys == ["k1", "k2", "k3"]
    assert authorized("Bearer k3", keys) and not authorized("k3", keys) and not authorized(None, keys)


@pytest.fixture(scope="module")
def tight_image_queue(ray_cluster):
    """The local image model with one request at a time and a queue of one."""
    local = load_app_args(LOCAL_CONFIG)
    image = local.default_model("image")
    image.deployment = DeploymentArgs(num_cpus=0, max_ongoing_requests=1, max_queued_requests=1)
    image.batch.max_batch_size = 1
    gateway = local.gateway.without_partials().model_copy(update={"saturated_hold_s": 120.0})  # until a call finishes
    args = AppArgs(models=[image], gateway=gateway)
    serve.run(build_app(args), name="tight", route_prefix="/tight")
    yield ray_cluster + "/tight"
    serve.delete("tight")


def test_overload_answers_503_fast_with_retry_after(tight_image_queue):
    payload = {"prompt": "a slow picture", "size": "512x512", "num_inference_steps": 40}

    async def burst():
        async with httpx.AsyncClient(timeout=120) as client:
            async def one():
                start = time.perf_counter()
                resp = await client.post(tight_image_queue + "/v1/images/generations", json=payload)
                return resp, time.perf_counter() - start
            return await asyncio.gather(*[one() for _ in range(8)])

    results = asyncio.run(burst())
    statuses = [r.status_code for r, _ in results]
    assert 200 in statuses, statuses
    rejected = [(r, t) for r, t in results if r.status_code == 503]
    assert rejected, f"no request was shed: {statuses}"
    slowest_ok = max(t for r, t in results if r.status_code == 200)
    for resp, elapsed in rejected:
        assert resp.headers["retry-after"]
        assert resp.json()["error"]["code"] == "overloaded"
        assert elapsed < slowest_ok  # shed at once, not after waiting for a slot
    # the replica is still healthy: the next request succeeds
    ok = httpx.post(tight_image_queue + "/v1/images/generations", json={"prompt": "cat", "size": "64x64"}, timeout=120)
    assert ok.status_code == 200


def test_a_request_for_a_full_model_is_refused_before_its_body_is_read(tight_image_queue):
    """Once the image model has refused a call for a full queue, the next image request is answered
    503 from its headers alone: the raw request announces a body it never sends."""
    slow = {"prompt": "a slow picture", "size": "512x512", "num_inference_steps": 50}  # the limits allow 50
    url = httpx.URL(tight_image_queue + "/v1/images/generations")
    partial = (f"POST {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
               "Content-Length: 100000\r\n\r\n{\"prompt\": ").encode()
    with httpx.Client(timeout=600) as client, ThreadPoolExecutor(8) as pool:
        held: list = []

        def refused_without_its_body() -> str | None:
            """Keep the slot and the queue place taken by slow requests; once a small request is refused
            (the model is known to be full), send the body-less one at once and return its reply."""
            while sum(not f.done() for f in held) < 2:
                held.append(pool.submit(client.post, url, json=slow))
            try:
                probe = client.post(url, json={"prompt": "one more", "size": "64x64"}, timeout=5)
            except httpx.TimeoutException:  # it got the queue place: the queue was not full yet
                return None
            if probe.status_code != 503:
                return None
            with socket.create_connection((url.host, url.port), timeout=10) as sock:
                sock.sendall(partial)
                try:
                    return read_response(sock)
                except TimeoutError:  # the gateway waited for the body
                    return None

        reply = wait_until(refused_without_its_body, 240, "a 503 answered without the request's body")
        assert reply.startswith("HTTP/1.1 503"), reply
        assert "retry-after: 1" in reply.lower() and '"overloaded"' in reply
        assert {f.result().status_code for f in held} <= {200, 503}


def read_response(sock: socket.socket) -> str:
    """One whole HTTP/1.1 response with a Content-Length body, from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < content_length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def content_length(data: bytes) -> int:
    head = data.partition(b"\r\n\r\n")[0].decode(errors="replace").lower()
    return next((int(line.split(":", 1)[1]) for line in head.splitlines() if line.startswith("content-length:")), 0)


def test_readiness_waits_only_for_always_on_models():
    from gateway.services import ServedModel, waiting_for

    models = {"paraformer": ServedModel("paraformer", "asr", "funasr-paraformer", None),
              "stable-audio": ServedModel("stable-audio", "music", "diffusers-stable-audio", None, always_on=False)}
    # keyed by model name, which is also the deployment name Serve reports replicas under
    assert waiting_for(models, {"paraformer": 0, "stable-audio": 0}) == ["paraformer"]  # music may sit at zero
    assert waiting_for(models, {"paraformer": 1}) == []
    assert DeploymentArgs(num_replicas=0).always_on is False
    scale_to_zero = DeploymentArgs.model_validate({"autoscaling": {"min_replicas": 0, "max_replicas": 2}})
    assert scale_to_zero.always_on is False and DeploymentArgs().always_on is True

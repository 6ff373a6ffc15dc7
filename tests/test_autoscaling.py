"""A load step makes replicas rise, and fall back once it stops, with no failed request."""

from __future__ import annotations

import threading

import httpx
from ray import serve

from graphs.app import build_app
from mmserve.config import AutoscalingArgs, BatchArgs, DeploymentArgs
from mmserve.config.app import AppArgs, load_app_args
from tests.conftest import LOCAL_CONFIG
from tests.helpers import wait_until

APP = "autoscale"


def running_replicas() -> int:
    deployment = serve.status().applications[APP].deployments["sd3-medium"]
    return deployment.replica_states.get("RUNNING", 0)


def test_replicas_follow_a_load_step(ray_cluster):
    local = load_app_args(LOCAL_CONFIG)
    image = local.default_model("image").model_copy(deep=True)
    image.batch = BatchArgs(max_batch_size=1)
    image.deployment = DeploymentArgs(
        num_cpus=0, max_ongoing_requests=2, max_queued_requests=-1,
        autoscaling=AutoscalingArgs(min_replicas=1, max_replicas=2, target_ongoing_requests=1,
                                    upscale_delay_s=1, downscale_delay_s=4, look_back_period_s=12))
    serve.run(build_app(AppArgs(models=[image], gateway=local.gateway.without_partials())), name=APP,
              route_prefix="/" + APP)
    url = f"{ray_cluster}/{APP}/v1/images/generations"
    payload = {"prompt": "load step", "size": "256x256", "num_inference_steps": 20}
    statuses: list[int] = []
    stop = threading.Event()

    def user():
        with httpx.Client(timeout=300) as client:  # queued behind the other users on a busy machine
            while not stop.is_set():
                statuses.append(client.post(url, json=payload).status_code)

    try:
        assert running_replicas() == 1
        users = [threading.Thread(target=user) for _ in range(6)]
        for t in users:
            t.start()
        wait_until(lambda: running_replicas() == 2, timeout=300, interval=1, what="a second replica under load")
        stop.set()
        for t in users:
            t.join()
        wait_until(lambda: running_replicas() == 1, timeout=300, interval=1,
                   what="replicas to fall back to one after the load stopped")
        assert statuses and set(statuses) == {200}, f"failed requests during scaling: {set(statuses)}"
    finally:
        stop.set()
        serve.delete(APP)

"""Shared fixtures: no network but loopback, tiny models built once, one local Ray cluster."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

from bench.stack import free_port

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

DATA = Path(__file__).parent / "data"
_real_connect = socket.socket.connect


def _loopback_only(sock: socket.socket, address, *args, **kwargs):
    """Refuse every connection that leaves the machine: proves no code path reaches a model hub."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = ipaddress.ip_address(socket.gethostbyname(host)) if host == "localhost" else None
        if ip is None or not ip.is_loopback:
            raise ConnectionRefusedError(f"tests may not reach the network: {address!r}")
    return _real_connect(sock, address, *args, **kwargs)


socket.socket.connect = _loopback_only

# `fake_lmdeploy`: lmdeploy 0.18.0's stand-in as `lmdeploy` for one test (tests/standins/).
pytest_plugins = ["tests.standins.lmdeploy_fixture"]


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """Root of the tiny model tree (see mmserve.tiny.catalog); MMSERVE_TEST_MODELS reuses one."""
    from mmserve.tiny.catalog import build_all

    root = Path(os.environ.get("MMSERVE_TEST_MODELS") or tmp_path_factory.mktemp("models"))
    build_all(root)
    return root


@pytest.fixture(scope="session")
def ray_cluster(tiny_models):
    """A real local Ray cluster with logical GPUs, so fractional num_gpus schedules on CPU. Its 24 logical
    CPUs hold serve_config.yaml's minimum replicas (15 CPUs) beside the local stack's."""
    import ray
    from ray import serve

    from gateway.proxy_guard import IMPORT_PATH

    os.environ["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] = IMPORT_PATH  # read by Serve's proxy at start
    port = free_port()
    os.environ["MMSERVE_TEST_METRICS_PORT"] = str(metrics_port := free_port())
    ray.init(
        num_cpus=24, num_gpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
        _metrics_export_port=metrics_port,
        runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                                  "MMSERVE_MODEL_ROOT": str(tiny_models)}},
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


LOCAL_CONFIG = Path(__file__).parents[1] / "configs" / "local.yaml"


@pytest.fixture(scope="session")
def local_stack(ray_cluster):
    """configs/local.yaml's whole application (every model, every flow) behind real HTTP."""
    from ray import serve

    from graphs.app import build_app
    from mmserve.config.app import load_app_args

    serve.run(build_app(load_app_args(LOCAL_CONFIG)), name="mmserve", route_prefix="/")
    yield ray_cluster
    serve.delete("mmserve")

"""The one stack starter: a local Ray cluster with Serve's HTTP proxy on a free loopback port, in this
process, for the benchmarks and drivers that serve their own application (`LocalCluster` in
`bench.cluster` is the multi-node variant: one `ray start` process per node, for faults).

    with local_stack(models, dashboard=True) as stack:
        serve.run(build_app(args), name="x", route_prefix="/")
        wait_ready(stack.url)

`free_port` is also what the test fixtures use. `ray` is imported only when a stack starts.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    port: int
    dashboard_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def dashboard_url(self) -> str | None:
        return None if self.dashboard_port is None else f"http://{HOST}:{self.dashboard_port}"


def start_stack(models: Path | None, num_cpus: int = 8, dashboard: bool = False, serve_http: bool = True,
                job_env: bool = True) -> Stack:
    """`ray.init` on this machine (loopback, no log forwarding) and, with `serve_http`, `serve.start` with
    the HTTP proxy on a free port (without it the port is only picked: a `serve deploy` config sets it).

    `models` is exported as MMSERVE_MODEL_ROOT here and, with `job_env`, to every replica with the
    offline switches (apps deployed through the dashboard carry their own runtime_env instead)."""
    import ray

    stack = Stack(free_port(), free_port() if dashboard else None)
    kwargs: dict = {"include_dashboard": dashboard}
    if dashboard:
        kwargs.update(dashboard_host=HOST, dashboard_port=stack.dashboard_port)
    if models is not None:
        os.environ["MMSERVE_MODEL_ROOT"] = str(models)
        if job_env:
            kwargs["runtime_env"] = {"env_vars": {"MMSERVE_MODEL_ROOT": str(models), "HF_HUB_OFFLINE": "1",
                                                  "TRANSFORMERS_OFFLINE": "1"}}
    ray.init(num_cpus=num_cpus, log_to_driver=False, _node_ip_address=HOST, **kwargs)
    if serve_http:
        from ray import serve

        serve.start(http_options={"host": HOST, "port": stack.port})
    return stack


def stop_stack() -> None:
    import ray
    from ray import serve

    with contextlib.suppress(Exception):  # nothing was served yet, or Ray is already down
        serve.shutdown()
    ray.shutdown()


@contextlib.contextmanager
def local_stack(models: Path | None, **kwargs) -> Iterator[Stack]:
    """`start_stack`, then `stop_stack` however the block ends."""
    stack = start_stack(models, **kwargs)
    try:
        yield stack
    finally:
        stop_stack()

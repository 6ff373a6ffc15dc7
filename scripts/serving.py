"""What the scripts that start their own local stack share: a free port, and waiting for /readyz."""

from __future__ import annotations

import socket
import time


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout_s: float = 900) -> None:
    """Polls the gateway's /readyz until every always-on model has a running replica."""
    import requests  # here: the GPU check imports these scripts where requests may be missing

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(url + "/readyz", timeout=10).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/readyz not ready after {timeout_s:.0f} s")
        time.sleep(1)

"""One request, traceable across replicas: one grep of the Serve logs for its `x-request-id` finds it in
every replica a flow touched (Serve carries the request id through DeploymentHandle calls and writes it
into each replica's access line), and the gateway's own JSON access line lands in its replica log."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from tests.helpers import SPEECH_EN, SPEECH_ZH, wait_until

APP = "mmserve"  # tests/conftest.py:local_stack's application name

# Each flow: its form, its spoken input, and the deployments (the gateway, then models by name) it calls.
FLOWS = {
    "speech-to-image": ({"rewrite": "true", "seed": "1"}, SPEECH_ZH,
                        ["gateway", "paraformer", "qwen2.5-7b-instruct", "sd3-medium"]),
    "voice-chat": ({"stream": "true"}, SPEECH_EN, ["gateway", "paraformer", "qwen2.5-7b-instruct", "chattts"]),
}


def serve_logs_dir() -> Path:
    """This cluster's Serve log folder (/tmp/ray/session_<...>/logs/serve), asked of Ray, not guessed."""
    import ray

    return Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"


def replica_lines_with(deployment: str, needle: str) -> list[str]:
    """Lines naming `needle` in every log file of `deployment`'s replicas (replica_<app>_<deployment>_<id>.log)."""
    found = []
    for path in serve_logs_dir().glob(f"replica_{APP}_{deployment}_*.log*"):
        found += [line for line in path.read_text(errors="replace").splitlines() if needle in line]
    return found


def gateway_access_record(request_id: str) -> dict | None:
    for line in replica_lines_with("gateway", request_id):
        if (start := line.find('{"request_id"')) >= 0:
            record = json.loads(line[start:])
            if record["request_id"] == request_id:
                return record
    return None


@pytest.mark.parametrize("flow", list(FLOWS))
def test_one_grep_finds_a_flow_request_in_every_replica_it_touched(local_stack, flow):
    request_id = f"trace-{flow}-{uuid.uuid4().hex}"
    form, speech, deployments = FLOWS[flow]
    with httpx.stream("POST", f"{local_stack}/v1/flows/{flow}", headers={"x-request-id": request_id},
                      data=form, files={"file": ("q.wav", speech.read_bytes())}, timeout=300) as resp:
        body = resp.read()
        assert resp.status_code == 200, body[:500]
        assert resp.headers["x-request-id"] == request_id

    def untouched() -> list[str]:
        return [d for d in deployments if not replica_lines_with(d, request_id)]

    wait_until(lambda: not untouched(), timeout=120, interval=0.5,
               what=lambda: f"{request_id} in the logs of {untouched()}")
    record = wait_until(lambda: gateway_access_record(request_id), timeout=60,
                        what="the gateway's JSON access line", interval=0.5)
    assert record["path"] == f"/v1/flows/{flow}" and record["method"] == "POST"
    assert record["status"] == 200 and record["duration_ms"] > 0

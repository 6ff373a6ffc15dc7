"""The load tool (locust, in its own process) against the local stack: report and plot shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def run_tool(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    # its own process: locust monkeypatches the standard library with gevent
    return subprocess.run([sys.executable, "-m", "scripts.loadtest", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_sweep_writes_a_report_and_a_plot(local_stack, tmp_path):
    out = tmp_path / "load.json"
    done = run_tool("--url", local_stack, "--routes", "transcribe,images,chat,speech", "--sweep", "1,2",
                    "--duration", "4", "--warmup", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [level["users"] for level in report["levels"]] == [1, 2]
    for level in report["levels"]:
        for name in ("transcribe", "images", "chat", "speech"):
            route = level["routes"][name]
            assert route["requests"] > 0 and route["errors"] == {}, (name, route)
            lat = route["latency_ms"]
            assert lat["p50"] <= lat["p90"] <= lat["p99"]
        assert level["routes"]["transcribe"]["rtf"]["p50"] > 0
        assert level["routes"]["chat"]["ttft_ms"]["p50"] > 0
        assert level["routes"]["speech"]["first_audio_ms"]["p50"] > 0
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://example.com"])
def test_refuses_targets_off_this_machine(url, tmp_path):
    done = run_tool("--url", url, "--routes", "healthz", "--duration", "1", "--out", str(tmp_path / "x.json"),
                    timeout=60)
    assert done.returncode != 0
    assert not (tmp_path / "x.json").exists()

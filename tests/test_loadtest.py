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
    return subprocess.run([sys.executable, "-m", "bench.loadtest", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_sweep_writes_a_report_and_a_plot(local_stack, tmp_path):
    out = tmp_path / "load.json"
    done = run_tool("--url", local_stack, "--routes", "transcribe,images,chat,speech", "--sweep", "1,2",
                    "--duration", "4", "--warmup", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [level["users"] for level in report["levels"]] == [1, 2]
    for level in report["levels"]:
        busy_ms, longest_ms = 0.0, 0.0
        for name in ("transcribe", "images", "chat", "speech"):
            route = level["routes"][name]
            assert route["requests"] > 0 and route["errors"] == {}, (name, route)
            lat = route["latency_ms"]
            assert lat["min"] > 0
            busy_ms += lat["mean"] * route["ok"]
            longest_ms = max(longest_ms, lat["max"])
        # Closed loop: each user's requests follow one another, so their latencies add up to at most
        # the users' time in the window plus one request's overrun (latency timed from anything but
        # each request's own start, or counted twice, breaks this).
        assert busy_ms <= level["users"] * (level["window_s"] * 1000 + longest_ms), (busy_ms, level["window_s"])
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


def test_realtime_turns_are_timed_from_the_end_of_speech(local_stack, tmp_path):
    out = tmp_path / "realtime.json"
    done = run_tool("--url", local_stack, "--routes", "realtime", "--users", "1", "--warmup", "0",
                    "--duration", "120", "--max-requests", "2", "--realtime-silence-ms", "300",
                    "--realtime-chunk-ms", "40", "--out", str(out), timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    route = json.loads(out.read_text())["levels"][0]["routes"]["realtime"]
    assert route["requests"] >= 1 and route["errors"] == {}, route
    after = {name: figures["p50"] for name, figures in route["after_speech_ms"].items()}
    spoken_ms = route["reported"]["input_audio_s"]["p50"] * 1000
    assert route["reported"]["audio_s"]["p50"] > 0
    # the turn ends only after the server heard the speech end, and the reply follows in order
    assert 0 < after["speech_stopped_after_speech_ms"] <= after["first_audio_after_speech_ms"]
    assert after["first_audio_after_speech_ms"] <= after["response_done_after_speech_ms"]
    # the speech went out at real-time pace, and the figures start where it ended, not at the session's start
    assert route["latency_ms"]["p50"] >= spoken_ms + after["response_done_after_speech_ms"]


def test_realtime_clip_is_24khz_speech_without_its_silent_tail():
    import numpy as np
    import soundfile as sf

    from bench.loadtest.realtime import RATE, speech_clip

    clip = speech_clip("en")
    recorded = sf.info(ROOT / "tests" / "data" / "speech_en.wav").duration
    samples = np.frombuffer(clip.pcm, "<i2").astype(np.float32) / 32768
    assert RATE == 24000 and len(samples) == round(clip.seconds * RATE)
    assert 0.5 * recorded < clip.seconds < recorded  # the trailing silence is gone, the speech is not
    assert np.sqrt(np.mean(samples[-RATE // 100:] ** 2)) > 0.001


def test_the_load_tool_covers_every_declared_route():
    """Each route a task or flow declares (mmserve/tasks.py, mmserve/config/flows.py) has a sender here,
    so a new task's route cannot be left out of load tests and benchmarks unnoticed."""
    from bench.loadtest.routes import ROUTES
    from mmserve.config.flows import FLOWS
    from mmserve.tasks import TASKS

    declared = {path for task in TASKS.values() for path in task.routes} | \
        {path for flow in FLOWS.values() for path in flow.routes}
    assert declared - {route.path for route in ROUTES.values()} == set()

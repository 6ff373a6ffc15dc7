"""The `mmserve` command (installed by `pip install -e .`, as scripts/setup.sh does)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.cli import COMMANDS as BENCH_COMMANDS
from mmserve.tiny.catalog import BUILDERS

ROOT = Path(__file__).resolve().parents[1]
MMSERVE = Path(sys.executable).parent / "mmserve"


def mmserve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(MMSERVE), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_help_lists_the_commands_and_an_unknown_one_is_refused():
    out = mmserve("--help")
    assert out.returncode == 0
    assert [line.split()[1] for line in out.stdout.splitlines()[1:] if line.strip()] == \
        ["run", "plan", "build-tiny", "bench"]
    wrong = mmserve("serve")
    assert wrong.returncode == 2 and "unknown command 'serve'" in wrong.stderr


def test_plan_checks_the_production_config():
    out = mmserve("plan", "serve_config.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("plan: OK")
    too_small = mmserve("plan", "serve_config.yaml", "--gpu-memory-gb", "8")
    assert too_small.returncode == 1 and "plan: DOES NOT FIT" in too_small.stdout


def test_bench_and_build_tiny_list_what_there_is():
    bench = mmserve("bench", "--help")
    assert bench.returncode == 0 and all(name in bench.stdout for name in BENCH_COMMANDS)
    tiny = mmserve("build-tiny", "--help")
    assert tiny.returncode == 0 and all(name in tiny.stdout for name in BUILDERS)
    assert mmserve("run", "--help").returncode == 0

"""The CPU gateway replica imports no model library: torch alone costs it ~600 MB of memory and
seconds of start-up, for types it only builds and reads (they live in mmserve/protocol)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "torchaudio", "transformers", "diffusers", "funasr", "ChatTTS")
ROOT = Path(__file__).resolve().parents[1]


def test_gateway_imports_no_model_library():
    # A fresh interpreter: this test process has torch loaded already (other tests, conftest).
    code = f"import json, sys; import graphs.gateway; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []

#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install mmserve with its test tools. Idempotent; only needs Python.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q --upgrade pip
# One resolve for everything: the torch/torchvision/torchaudio trio is pinned in pyproject.toml.
python -m pip install -q -e '.[dev]'
python - <<'PY'
import funasr, torch, torchaudio
from funasr.register import tables
# A torchaudio whose compiled part fails to load makes funasr register no models, silently.
missing = {"SeacoParaformer", "FsmnVADStreaming", "CTTransformer"} - set(tables.model_classes)
assert not missing, f"funasr did not register {missing}: {getattr(funasr, '_IMPORT_ERRORS', {})}"
print(f"mmserve environment ready: torch {torch.__version__}, torchaudio {torchaudio.__version__}")
PY

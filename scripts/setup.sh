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
# A first install takes about 9 GB in .venv (torch and its CUDA libraries), and pip's downloads more:
# say so up front instead of failing half-way with "No space left on device".
NEED_GB=${MMSERVE_SETUP_NEED_GB:-12}
if ! python -c "import torch" 2>/dev/null; then
  free_gb=$(df -Pk . | awk 'NR == 2 { print int($4 / 1048576) }')
  if [ "$free_gb" -lt "$NEED_GB" ]; then
    echo "scripts/setup.sh: $free_gb GB free under $PWD; a first install needs about $NEED_GB GB" \
         "(MMSERVE_SETUP_NEED_GB=0 skips this check)" >&2
    exit 1
  fi
fi
# One resolve for everything: the torch/torchvision/torchaudio trio is pinned in pyproject.toml.
python -m pip install -q -e '.[dev]'
# Headless Chromium for tests/test_playground.py (Playwright drives it; it never downloads a browser of
# its own): Debian's package, with a small CJK font so its screenshots show Chinese text. Required in CI
# (CI=true); elsewhere that test skips without it.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
  as_root=(); [ "$(id -u)" -eq 0 ] || as_root=(sudo -n)
  if ! { "${as_root[@]}" apt-get update -qq && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; }; then
    echo "could not install chromium (apt-get install chromium); the playground test needs it" >&2
    [ "${CI:-}" != true ] || exit 1
  fi
fi
if [ "${CI:-}" = true ] && [ ! -x /usr/bin/chromium ]; then
  echo "CI needs /usr/bin/chromium for the playground test" >&2
  exit 1
fi
python - <<'PY'
import funasr, torch, torchaudio
from funasr.register import tables
# A torchaudio whose compiled part fails to load makes funasr register no models, silently.
missing = {"SeacoParaformer", "FsmnVADStreaming", "CTTransformer", "SenseVoiceSmall"} - set(tables.model_classes)
assert not missing, f"funasr did not register {missing}: {getattr(funasr, '_IMPORT_ERRORS', {})}"
print(f"mmserve environment ready: torch {torch.__version__}, torchaudio {torchaudio.__version__}")
PY

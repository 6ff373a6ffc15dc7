#!/usr/bin/env bash
# The main job on one CPU machine: set up, build the tiny models, serve configs/local.yaml with
# `serve run`, answer one real spoken request, then keep serving until Ctrl-C.
# MMSERVE_DEMO_ONLY=1 stops the stack after the demo request.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
export MMSERVE_MODEL_ROOT="${MMSERVE_MODEL_ROOT:-$PWD/.models}"
# Serve's proxy answers 503 + Retry-After, not 500, when a gateway replica dies mid-request
export RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=graphs.proxy_guard:middlewares
python -m mmserve.tiny --out "$MMSERVE_MODEL_ROOT"

set -m  # job control: the background `serve run` then still receives the SIGINT sent below
serve run configs/local.yaml &
serve_pid=$!
trap 'kill -INT $serve_pid 2>/dev/null; wait $serve_pid 2>/dev/null' EXIT
python -m bench.demo --url http://127.0.0.1:8000
if [ "${MMSERVE_DEMO_ONLY:-0}" = "1" ]; then
  exit 0
fi
echo "mmserve is serving on http://127.0.0.1:8000 (API docs: /docs). Ctrl-C stops it."
wait $serve_pid

#!/usr/bin/env bash
# The main job on one CPU machine: set up, build the tiny models, serve configs/local.yaml with
# `mmserve run` (Serve's `serve run` with the proxy guard), answer one real spoken request, then keep serving until Ctrl-C.
# MMSERVE_DEMO_ONLY=1 stops the stack after the demo request.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
export MMSERVE_MODEL_ROOT="${MMSERVE_MODEL_ROOT:-$PWD/.models}"
mmserve build-tiny --out "$MMSERVE_MODEL_ROOT"

set -m  # job control: the background `serve run` then still receives the SIGINT sent below
mmserve run configs/local.yaml &  # execs `serve run`, so $! is its pid
serve_pid=$!
trap 'kill -INT $serve_pid 2>/dev/null; wait $serve_pid 2>/dev/null' EXIT
python -m bench.demo --url http://127.0.0.1:8000
if [ "${MMSERVE_DEMO_ONLY:-0}" = "1" ]; then
  exit 0
fi
echo "mmserve is serving on http://127.0.0.1:8000 (API docs: /docs). Ctrl-C stops it."
wait $serve_pid

#!/usr/bin/env bash
# Hunt flakes on purpose: run the timing-sensitive test files N times in a row (default 5), each run a
# fresh pytest session with its own Ray cluster, as CI runs them, and count the red runs.
#   bash scripts/flake_hunt.sh [N] [more pytest args, e.g. -x or other test files]
# Tiny models are built once for all runs (MMSERVE_TEST_MODELS). Exit 1 when any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-5}
shift $(( $# > 0 ? 1 : 0 ))
FILES=(tests/test_realtime_timeouts.py tests/test_live_voice.py tests/test_speech_sse.py tests/test_faults.py
       tests/test_disconnects.py tests/test_autoscaling.py)
setup_log=$(mktemp /tmp/mmserve-flake-setup.XXXXXX)
bash scripts/setup.sh >"$setup_log" 2>&1 || { cat "$setup_log"; exit 1; }
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
export MMSERVE_TEST_MODELS=${MMSERVE_TEST_MODELS:-$(mktemp -d /tmp/mmserve-flake-models.XXXXXX)}
failed=0
for i in $(seq 1 "$N"); do
  echo "== run $i of $N ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
  log=$(mktemp /tmp/mmserve-flake-run.XXXXXX)
  python -m pytest -q -p no:cacheprovider "${FILES[@]}" "$@" >"$log" 2>&1 || { failed=$((failed + 1)); echo "log: $log"; }
  grep -E "^(FAILED|ERROR) |[0-9]+ (passed|failed)" "$log"
done
echo "flake hunt: $((N - failed)) of $N runs green"
[ "$failed" -eq 0 ]

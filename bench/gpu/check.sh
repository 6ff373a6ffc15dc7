#!/usr/bin/env bash
# One-shot GPU check for a machine with a CUDA GPU and no network (docs/gpu-check.md):
#   1. install the wheels carried in .gpu-wheels/ (made here by bench/gpu/wheels.sh) next to the
#      machine's own torch/transformers, and check every import;
#   2. run the gpu-marked runner tests (tests/test_runner_*.py, with `ray` made unimportable);
#   3. run the runner-level benchmarks (python -m bench.gpu.bench) on random weights of the real sizes,
#      each in its own process under its own time box, in priority order, skipping whatever no
#      longer fits the total budget (after tts: voice, voice chat's time to first audio through the
#      runners, python -m bench.voice gpu); then print a summary.
# Results: docs/bench/gpu-<name>.json, and under $OUT (all the device tool brings back):
# gpu-check.log, pytest.xml, gpu-bench.json (every record) and gpu-bench.tgz (the gpu-*.json files).
#
#   bash bench/gpu/check.sh             # on the GPU machine (device tool: carry .gpu-wheels)
#   bash bench/gpu/check.sh --dry-run   # here, on CPU: the plan, the wheels, tiny runs
set -uo pipefail
cd "$(dirname "$0")/../.."

DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
BUDGET_S=${GPU_CHECK_BUDGET_S:-450}          # all steps together: 7.5 min, inside the 8 min asked for
OUT=${OUT:-/tmp/mmserve-gpu-check}           # the device tool sets OUT; only files under it come back
WORK=${GPU_CHECK_WORK:-/tmp/mmserve-gpu-work}  # model folders: ~30 GB for SD3 + the 7B LLM
WHEELS=${WHEELS:-.gpu-wheels}
SITE=${GPU_CHECK_SITE:-/tmp/mmserve-gpu-site}  # carried packages, first on PYTHONPATH
PY=${PYTHON:-python3}
if [ "$DRY" = 1 ]; then
  [ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
  BENCH_OUT=$OUT/dry-bench
  WORK=$WORK-dry
else
  BENCH_OUT=docs/bench
fi
mkdir -p "$OUT" "$BENCH_OUT" "$WORK"
rm -f "$BENCH_OUT"/gpu-*.json "$OUT/pytest.xml"  # a step skipped this time must not show an older result
# GPU_CHECK_INSTALL=1 --dry-run also installs the wheels: a rehearsal with PYTHON= an interpreter that
# holds only the GPU machine's packages (and WHEELS= wheels built for its Python version).
INSTALL=$([ "$DRY" = 0 ] || [ "${GPU_CHECK_INSTALL:-0}" = 1 ] && echo 1 || echo 0)
[ "$INSTALL" = 1 ] && export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"  # carried packages before the machine's
LOG=$OUT/gpu-check.log
exec > >(tee "$LOG") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export DRY OUT WORK WHEELS SITE PY BENCH_OUT
START=$SECONDS
SUMMARY=()

# step NAME BOX_S CMD...: run CMD under a time box if it still fits the budget; record the outcome.
step() {
  local name=$1 box=$2 t0=$SECONDS rc; shift 2
  local left=$((BUDGET_S - (SECONDS - START)))
  if [ "$DRY" = 0 ] && [ "$box" -gt "$left" ]; then
    echo "== $name: skipped, its ${box} s box does not fit the ${left} s left of the ${BUDGET_S} s budget"
    SUMMARY+=("$(printf '%-10s skipped (time budget: %ss box, %ss left)' "$name" "$box" "$left")")
    return 0
  fi
  [ "$DRY" = 1 ] && box=$((box * 4))  # a 2-core CPU builds and runs the tiny models slower
  echo "== $name (box ${box} s, $((SECONDS - START)) s elapsed)"
  timeout -k 10 "$box" bash -c '"$@"' "$name" "$@"  # a fresh bash: runs the exported functions too
  rc=$?
  local status=ok
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && status="TIMEOUT"
  [ "$rc" != 0 ] && [ "$status" = ok ] && status="FAILED (rc $rc)"
  SUMMARY+=("$(printf '%-10s %-16s %4d s' "$name" "$status" "$((SECONDS - t0))")")
  return 0
}

facts() {
  echo "mode: $([ "$DRY" = 1 ] && echo 'dry run (CPU)' || echo 'GPU run'); budget ${BUDGET_S} s; OUT=$OUT; python $PY"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__, "| CUDA", torch.cuda.is_available())'
  df -h "$WORK" | tail -1
}

plan() {
  echo "plan (time box per step; steps run in this order while they fit ${BUDGET_S} s):"
  echo "  setup      60 s  install .gpu-wheels next to the machine's torch/transformers (--target, first on PYTHONPATH)"
  echo "  probe      30 s  import everything the checks need; FunASR must register its models"
  echo "  tests      90 s  pytest -m gpu tests/test_runner_*.py (ray unimportable)"
  "$PY" -m bench.gpu.bench plan | sed '/^ *tts /a\
  voice       90 s  one voice-chat turn through the runners, ASR on CPU: time to first audio (python -m bench.voice gpu)'
  echo "wheels in $WHEELS:"
  if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    du -cb "$WHEELS"/*.whl | awk '{n = $2; sub(".*/", "", n); printf "  %7.2f MiB  %s\n", $1 / 1048576, n}'
  else
    echo "  none: run 'bash bench/gpu/wheels.sh' first"
  fi
}

install_wheels() {  # --no-deps: the machine's torch, transformers, numpy... are never replaced
  rm -rf "$SITE"
  "$PY" -m pip install -q --no-index --no-deps --disable-pip-version-check --target "$SITE" "$WHEELS"/*.whl
}

check_wheels() {  # dry run: would every wheel install into the GPU machine's Python 3.12?
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels in $WHEELS: run bench/gpu/wheels.sh"; return 1; }
  "$PY" -m pip install -q --dry-run --ignore-installed --no-index --no-deps --disable-pip-version-check \
    --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any --target "$(mktemp -d)" "$WHEELS"/*.whl &&
    echo "all $(ls "$WHEELS"/*.whl | wc -l) wheels install on cp312 manylinux x86_64"
}

gpu_tests() {  # `ray` is not on the GPU machine: make it unimportable here too, so the dry run proves it
  local xml=$OUT/pytest.xml
  "$PY" - "$xml" tests/test_runner_*.py <<'PY'
import sys
sys.modules["ray"] = None  # any `import ray` now raises ImportError
import pytest
xml, files = sys.argv[1], sys.argv[2:]
sys.exit(pytest.main(["-m", "gpu", "-q", "-p", "no:cacheprovider", "--timeout", "120", f"--junitxml={xml}", *files]))
PY
}

make_room() {  # a 16-bit 7-8B model folder is ~15 GiB: drop the other models' folders when disk is short
  local keep=${1%%-*} free
  free=$(df -Pk "$WORK" | awk 'NR == 2 {print int($4 / 1048576)}')
  [ "$free" -ge 20 ] && return 0
  echo "only ${free} GiB free in $WORK: removing model folders other than $keep (later steps rebuild them)"
  for d in "$WORK"/*; do [ "$(basename "$d")" = "$keep" ] || rm -rf "$d"; done
}

bench() {
  local name=$1
  if [ "$DRY" = 1 ]; then
    "$PY" -m bench.gpu.bench run "$name" --tiny --work "$WORK" --out "$BENCH_OUT"
  else
    make_room "$name"
    "$PY" -m bench.gpu.bench run "$name" --work "$WORK" --out "$BENCH_OUT"
  fi
}

voice() {  # one voice-chat turn through the runners (ASR -> LLM to its first clause -> TTS first chunk)
  if [ "$DRY" = 1 ]; then
    "$PY" -m bench.voice gpu --tiny --work "$WORK" --out "$BENCH_OUT"
  else  # reuses the asr, llm and tts folders the steps before built (rebuilt if make_room removed one)
    "$PY" -m bench.voice gpu --work "$WORK" --out "$BENCH_OUT"
  fi
}

export -f install_wheels check_wheels gpu_tests make_room bench voice
facts
plan
[ "$DRY" = 1 ] && step wheels 30 check_wheels
[ "$INSTALL" = 1 ] && step setup 60 install_wheels
[ "$DRY" = 1 ] && step configs 30 "$PY" -m bench.gpu.bench configs
step probe 30 "$PY" -m bench.gpu.bench probe
step tests 90 gpu_tests
while read -r name box; do
  step "$name" "$box" bench "$name"
  [ "$name" = tts ] && step voice 90 voice
done < <("$PY" -m bench.gpu.bench plan --boxes)
if [ "$DRY" = 1 ]; then  # the two real-size models a CPU can hold, end to end through their runners
  for name in asr tts; do
    step "$name-cpu" 60 "$PY" -m bench.gpu.bench run "$name" --device cpu --work "$WORK" --out "$OUT/dry-bench-real-cpu"
  done
fi

echo
echo "== summary ($((SECONDS - START)) s of the ${BUDGET_S} s budget)"
printf '  %s\n' "${SUMMARY[@]}"
echo "benchmarks ($BENCH_OUT):"
"$PY" -m bench.gpu.bench summary "$BENCH_OUT" --json "$OUT/gpu-bench.json"
if [ "$DRY" = 1 ]; then
  echo "real-size ASR and TTS on this CPU ($OUT/dry-bench-real-cpu):"
  "$PY" -m bench.gpu.bench summary "$OUT/dry-bench-real-cpu"
fi
tar czf "$OUT/gpu-bench.tgz" -C "$BENCH_OUT" $(cd "$BENCH_OUT" && ls gpu-*.json)
echo "results: $BENCH_OUT/gpu-*.json; under $OUT: gpu-check.log, pytest.xml, gpu-bench.json (all records),"
echo "  gpu-bench.tgz (the gpu-*.json files: tar xzf gpu-bench.tgz -C docs/bench)"

#!/usr/bin/env bash
# Download the wheels that bench/gpu/check.sh installs on the GPU machine (no network there)
# into .gpu-wheels/ (git-ignored), and print the total size, which must leave the tree that the
# device tool carries under its 64 MiB limit.
#
# The GPU machine (nvidia-h200 image, /work/.library/device/KINDS.md) has Python 3.12, torch 2.11
# (cu130), torchaudio 2.11, transformers 5.17, accelerate, numba, scipy, scikit-learn, pillow,
# einops, pyyaml, sentencepiece, tiktoken, huggingface_hub 1.33 and pytest. It lacks what is listed
# here: mmserve's model libraries at the versions pinned in pyproject.toml and the pure-Python (or
# small compiled) packages their import path needs, found by trying the imports in an environment
# holding only the machine's packages. Everything installs with --no-deps, so the machine's own
# torch/transformers are never replaced.
#
#   bash bench/gpu/wheels.sh            # Python 3.12 wheels into .gpu-wheels/
#   bash bench/gpu/wheels.sh --no-bnb   # without bitsandbytes (4/8-bit runs are then skipped)
#   PY_VERSION=3.11 WHEELS=/tmp/w bash bench/gpu/wheels.sh   # for a local 3.11 rehearsal
set -euo pipefail
cd "$(dirname "$0")/../.."

PY_VERSION=${PY_VERSION:-3.12}
WHEELS=${WHEELS:-.gpu-wheels}
LIMIT_MIB=64
WITH_BNB=1
[ "${1:-}" = "--no-bnb" ] && WITH_BNB=0
PIP=${PIP:-python3 -m pip}

pinned() {  # the exact version pyproject.toml pins for a dependency
  sed -n "s/^ *\"$1==\([^\"]*\)\".*/\1/p" pyproject.toml | head -1
}

# name==version; versions are the ones the project's .venv resolved (tests pass with them).
WHEEL_PKGS=(
  "diffusers==$(pinned diffusers)"
  "funasr==$(pinned funasr)"
  # mmserve itself (runner args) and its audio I/O
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  typing-extensions==4.16.0  # pydantic 2.14 needs >= 4.16; the machine's may be older
  soundfile==0.14.0 cffi==2.1.1 pycparser==3.12
  # funasr's import path (AutoModel, load_utils, hub download module, Paraformer/VAD/punc)
  omegaconf==2.3.1 kaldiio==2.18.1 rapidfuzz==3.14.6
  librosa==0.11.0 audioread==3.1.0 decorator==5.3.1 pooch==1.9.0 platformdirs==4.14.9 soxr==1.1.0
  # ChatTTS 0.2.5 (numba, torchaudio, einops are on the machine)
  pybase16384==0.3.9 vector-quantize-pytorch==1.32.0 torch-einops-utils==0.2.0 loguru==0.7.3
  einx==0.4.3 frozendict==2.5.1 vocos==0.1.0
  # Stable Audio's scheduler (tests/test_runner_music.py's GPU test)
  torchsde==0.2.6 trampoline==0.1.2
)
# Published as source only: built here into pure-Python (py3-none-any) wheels.
SDIST_PKGS=(
  "chattts==$(pinned chattts)"
  antlr4-python3-runtime==4.9.3  # omegaconf's parser
  encodec==0.1.1                 # vocos imports it
)
BNB=bitsandbytes==0.50.2
# bitsandbytes ships one native library per CUDA/ROCm/XPU release (43 MB); the machine's torch is
# a CUDA 13.0 build, so only the CUDA 13.x and CPU libraries are kept (about 3 MB).
BNB_KEEP='libbitsandbytes_(cpu|cuda13[0-9])\.so'

mkdir -p "$WHEELS"
abi=cp${PY_VERSION/./}
$PIP download -q --no-deps --only-binary=:all: -d "$WHEELS" \
  --python-version "$PY_VERSION" --implementation cp --abi "$abi" --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_24_x86_64 --platform any \
  "${WHEEL_PKGS[@]}"

for spec in "${SDIST_PKGS[@]}"; do
  name=${spec%%==*}; version=${spec##*==}
  if ! ls "$WHEELS"/"${name//-/_}"-"$version"-py3-none-any.whl >/dev/null 2>&1; then
    $PIP wheel -q --no-deps --no-binary "$name" -w "$WHEELS" "$spec"
  fi
done
for w in "$WHEELS"/*.whl; do  # a built wheel must be pure Python to run on the other machine
  case "$w" in *-none-any.whl|*manylinux*|*abi3*) ;; *) echo "not portable: $w" >&2; exit 1 ;; esac
done

if [ "$WITH_BNB" = 1 ]; then
  bnb_dir=$(mktemp -d)
  $PIP download -q --no-deps --only-binary=:all: -d "$bnb_dir" --python-version "$PY_VERSION" \
    --platform manylinux_2_24_x86_64 --platform manylinux2014_x86_64 "$BNB"
  python3 - "$bnb_dir"/bitsandbytes-*.whl "$WHEELS" "$BNB_KEEP" <<'PY'
"""Copy the wheel without the native libraries of other CUDA releases; RECORD lists what stays."""
import pathlib, re, sys, zipfile

src, out_dir, keep = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), re.compile(sys.argv[3])
dropped = lambda name: name.endswith(".so") and not keep.search(name)
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out_dir / src.name, "w", zipfile.ZIP_DEFLATED) as zout:
    for info in zin.infolist():
        if dropped(info.filename):
            continue
        data = zin.read(info)
        if info.filename.endswith(".dist-info/RECORD"):
            lines = data.decode().splitlines()
            data = ("\n".join(l for l in lines if not dropped(l.split(",")[0])) + "\n").encode()
        zout.writestr(info, data)
print(f"bitsandbytes: {src.stat().st_size / 2**20:.1f} MiB -> {(out_dir / src.name).stat().st_size / 2**20:.1f} MiB")
PY
  rm -rf "$bnb_dir"
else
  rm -f "$WHEELS"/bitsandbytes-*.whl
fi

ls -1 "$WHEELS"/*.whl | sed 's|.*/||'
wheels_b=$(du -cb "$WHEELS"/*.whl | tail -1 | cut -f1)
tree_b=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | awk '/\ttotal$/ {s += $1} END {print s + 0}')
total_b=$((wheels_b + tree_b))
awk -v w="$wheels_b" -v t="$tree_b" -v n="$(ls "$WHEELS"/*.whl | wc -l)" -v lim="$LIMIT_MIB" 'BEGIN {
  printf "wheels: %d files, %.1f MiB; working tree that travels: %.1f MiB; together %.1f MiB (limit %d MiB)\n",
    n, w / 1048576, t / 1048576, (w + t) / 1048576, lim }'
if [ "$total_b" -ge $((LIMIT_MIB * 1048576)) ]; then
  echo "over the ${LIMIT_MIB} MiB the device tool carries: try --no-bnb" >&2
  exit 1
fi

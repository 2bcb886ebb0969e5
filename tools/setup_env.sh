#!/usr/bin/env bash
# Create .venv in the repo root with the whole pinned stack, mmcv 2.1.0 with compiled ops included.
# Idempotent: a stamp keyed by the pin files and this script makes a second run on a ready machine a no-op.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
PIP="$VENV/bin/python -m pip"
MMCV_VERSION=2.1.0
TORCH_VERSION=2.14.1
STAMP="$VENV/.granvit_setup_stamp"
KEY=$(cat requirements/*.txt tools/setup_env.sh setup.cfg setup.py 2>/dev/null | sha256sum | cut -c1-16)

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]]; then
  echo "[setup] .venv is ready ($KEY)"
  exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
$PIP install -q "torch==$TORCH_VERSION" "torchvision==0.29.1"
# mmcv's setup.py imports pkg_resources, which setuptools >= 81 dropped.
$PIP install -q "setuptools>=77.0.3,<81" wheel ninja psutil

# mmcv 2.1.0 with ops: PyPI only has the sdist. The built wheel is cached keyed by torch version, because
# pip's own cache keys it by the sdist alone and would hand an ABI-incompatible build to another torch.
if ! "$VENV/bin/python" -c "import mmcv, mmcv._ext" 2>/dev/null; then
  CACHE="${GRANVIT_WHEEL_CACHE:-$HOME/.cache/granvit_mm/wheels}/torch-$TORCH_VERSION"
  mkdir -p "$CACHE"
  WHEEL=$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
  if [[ -z "$WHEEL" ]]; then
    echo "[setup] building mmcv $MMCV_VERSION with ops from source (10-15 min on 2 cores)"
    BUILD=$(mktemp -d)
    $PIP download -q --no-deps --no-binary :all: --no-build-isolation -d "$BUILD" "mmcv==$MMCV_VERSION"
    tar -xzf "$BUILD"/mmcv-$MMCV_VERSION.tar.gz -C "$BUILD"
    # torch 2.14 headers need C++20; mmcv hard-codes -std=c++17 after CFLAGS.
    sed -i 's/-std=c++17/-std=c++20/g' "$BUILD/mmcv-$MMCV_VERSION/setup.py"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" CFLAGS=-g0 \
      $PIP wheel -q --no-deps --no-build-isolation -w "$CACHE" "$BUILD/mmcv-$MMCV_VERSION"
    rm -rf "$BUILD"
    WHEEL=$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl | head -n1)
  fi
  $PIP install -q --no-deps "$WHEEL"
fi

$PIP install -q -r requirements/pins.txt -c requirements/constraints.txt
# xtuner pins bitsandbytes 0.45.0, which fails to import beside torch 2.14's triton ('triton.ops');
# 0.45.5 imports and keeps xtuner's LoRA path alive.
$PIP install -q --no-deps "bitsandbytes==0.45.5"
# mmcv's runtime deps (addict, yapf, ...) arrive through mmengine; make sure they are there.
$PIP install -q "addict" "yapf" "packaging" "pyyaml" -c requirements/constraints.txt
# The data engine: Ray Data and RapidOCR (PP-OCR ONNX models inside the wheel); moves no pin above.
$PIP install -q -r requirements/data_engine.txt -c requirements/constraints.txt
$PIP install -q --no-deps -e .
# The linters setup.cfg configures (`make lint`).
$PIP install -q -r requirements/lint.txt
"$VENV/bin/python" -c "import mmcv.ops, mmdet, mmpretrain, mmseg, xtuner, granvit_mm; print('[setup] stack imports ok')"
echo "$KEY" > "$STAMP"

#!/usr/bin/env bash
# A side environment for a stack that cannot share .venv (lmms-eval, transformers 5.x): its own venv from one
# requirements file, idempotent (a stamp keyed by the file and this script).
#   bash tools/setup_side_env.sh VENV_DIR REQUIREMENTS_FILE
# With REPO_PTH=1 it also writes granvit_repo.pth, so `granvit_mm.core` (the numpy-only contracts the lmms-eval
# task files use) imports there; nothing of granvit_mm is installed, and exported models must not need it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$1"
REQ="$2"
PY="${PYTHON:-python3}"
STAMP="$VENV/.granvit_side_env_stamp"
LOCK="${REQ%.txt}.constraints.txt"  # a pip freeze of a working env, when there is one
KEY=$( (cat "$REQ" "${BASH_SOURCE[0]}"; cat "$LOCK" 2>/dev/null; echo "$ROOT ${REPO_PTH:-0}") | sha256sum | cut -c1-16)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]]; then
  echo "[side-env] $VENV is ready ($KEY)"
  exit 0
fi
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ -f "$LOCK" ]]; then
  "$VENV/bin/python" -m pip install -q -r "$REQ" -c "$LOCK"
else
  "$VENV/bin/python" -m pip install -q -r "$REQ"
fi
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [[ "${REPO_PTH:-0}" == 1 ]]; then echo "$ROOT" > "$SITE/granvit_repo.pth"; else rm -f "$SITE/granvit_repo.pth"; fi
echo "$KEY" > "$STAMP"
echo "[side-env] $VENV ready"

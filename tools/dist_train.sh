#!/usr/bin/env bash
# Multi-process training: bash tools/dist_train.sh CONFIG NPROC [train.py args...]
# One process per GPU; without CUDA, NPROC CPU processes on gloo (tools/train.py starts the process group
# itself: MMEngine 0.10's init_dist calls torch.cuda.set_device). On CPU keep NPROC x OMP_NUM_THREADS within
# the cores. PYTHON defaults to the repo's .venv; NNODES, NODE_RANK, PORT, MASTER_ADDR as in OpenMMLab.
set -e
CONFIG=$1
NPROC=$2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "$PYTHON" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python; fi
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$ROOT":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"

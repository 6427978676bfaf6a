#!/usr/bin/env bash
# Distributed training with PyTorch's own launcher (torchrun), as in MMDetection:
#   bash tools/dist_train.sh CONFIG NUM_PROCS [train.py options...]
# On CPU the processes use the gloo backend (mmengine picks it when no GPU).
# Python: $PYTHON if set, else the project's environment ($VENV, default .venv, as
# `make test` / `make demo` create it), else `python` from PATH (your own environment).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash tools/dist_train.sh CONFIG NUM_PROCS [train.py options...]" >&2
  exit 2
fi
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV_DIR="${VENV:-$ROOT/.venv}"
case "$VENV_DIR" in /*) ;; *) VENV_DIR="$ROOT/$VENV_DIR" ;; esac
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$VENV_DIR/bin/python" ]; then
    PYTHON="$VENV_DIR/bin/python"
  else
    PYTHON=python
  fi
fi
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  echo "dist_train.sh: $PYTHON cannot import torch. Run 'make test' (or 'make setup') to" \
       "create $VENV_DIR, or set PYTHON=/path/to/your/python" >&2
  exit 1
fi

PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$ROOT/tools/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"

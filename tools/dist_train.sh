#!/usr/bin/env bash
# Train (or run one forgetting task) with NUM_PROCS processes on this node:
#   tools/dist_train.sh CONFIG NUM_PROCS [tools/train.py args...]
# Several nodes: run it on each with NNODES, NODE_RANK, MASTER_ADDR, PORT.
# Same conventions as MMDetection's tools/dist_train.sh; torch's launcher is
# called as torch.distributed.run (torchrun), since torch.distributed.launch
# is deprecated. Without CUDA, tools/train.py uses the gloo backend.
# PYTHON picks the interpreter (default: python).

CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

if [ -z "$CONFIG" ] || [ -z "$GPUS" ]; then
    echo "usage: $0 CONFIG NUM_PROCS [train.py args...]" >&2
    exit 2
fi

PYTHONPATH="$(dirname $0)/..":$PYTHONPATH \
$PYTHON -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS \
    --master_port=$PORT \
    $(dirname "$0")/train.py \
    $CONFIG \
    --launcher pytorch ${@:3}

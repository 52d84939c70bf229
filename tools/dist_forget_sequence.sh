#!/usr/bin/env bash
# Run a forgetting sequence with NUM_PROCS processes per task on this node:
#   tools/dist_forget_sequence.sh NUM_PROCS TASK_CONFIG... \
#       --base-checkpoint CKPT --work-dir DIR [forget_sequence.py args...]
# Several nodes: run it on each with NNODES, NODE_RANK, MASTER_ADDR, PORT
# (as tools/dist_train.sh). PYTHON picks the interpreter (default: python).

GPUS=$1
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

if [ -z "$GPUS" ] || [ $# -lt 2 ]; then
    echo "usage: $0 NUM_PROCS TASK_CONFIG... --base-checkpoint CKPT --work-dir DIR" >&2
    exit 2
fi

PYTHONPATH="$(dirname $0)/..":$PYTHONPATH \
$PYTHON $(dirname "$0")/forget_sequence.py "${@:2}" \
    --launcher pytorch \
    --nproc-per-node=$GPUS \
    --nnodes=$NNODES \
    --node-rank=$NODE_RANK \
    --master-addr=$MASTER_ADDR \
    --master-port=$PORT

#!/usr/bin/env bash
# Distributed training on one node: tools/dist_train.sh CONFIG GPUS [args]
CONFIG=$1
GPUS=$2
PORT=${PORT:-29500}

python -m torch.distributed.run --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "${@:3}"

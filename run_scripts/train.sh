#!/usr/bin/env bash
# Train with LAVIS's runner on NPROC processes of this node (torchrun; nccl on CUDA, gloo on CPU).
#   CFG=projects/gated/artquest.yaml NPROC=8 bash run_scripts/train.sh [--options key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
source run_scripts/setup_env.sh
python -m torch.distributed.run --nproc_per_node="${NPROC:-1}" --no-python lavis-gated-train \
    --cfg-path "${CFG:-projects/gated/artquest.yaml}" "$@"

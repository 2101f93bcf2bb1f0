#!/usr/bin/env bash
# Train with LAVIS's runner on N processes of this node (torchrun; nccl on CUDA, gloo on CPU).
#   bash run_scripts/train.sh [--cfg-path YAML] [--nproc N] [other lavis-gated-train flags, --options ...]
# --cfg-path defaults to projects/gated/artquest.yaml, --nproc to 1 (the CFG and NPROC variables, if set).
set -euo pipefail
cd "$(dirname "$0")/.."
source run_scripts/setup_env.sh

cfg="${CFG:-projects/gated/artquest.yaml}" nproc="${NPROC:-1}" passed=()
while [ $# -gt 0 ]; do
    case "$1" in
        --cfg-path) cfg="$2"; shift 2 ;;
        --nproc) nproc="$2"; shift 2 ;;
        *) passed+=("$1"); shift ;;
    esac
done
echo "train.sh: config $cfg, $nproc process(es)"
python -m torch.distributed.run --nproc_per_node="$nproc" --no-python lavis-gated-train \
    --cfg-path "$cfg" "${passed[@]}"

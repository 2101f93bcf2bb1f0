#!/usr/bin/env bash
# Evaluate a checkpoint on one split: writes <split>_metrics.json, <split>_predictions.json and the pictures
# (training_curves.png, <split>_modulation.png) in a new folder under the eval YAML's run.output_dir, and
# prints the metrics table.
#   bash run_scripts/eval.sh [CHECKPOINT] [--split val|test] [--nproc N] [--options key=value ...]
# CHECKPOINT defaults to the newest output/*/*/checkpoint_best.pth, --split to test, --nproc to $NPROC or 1 (gloo
# on CPU, nccl on CUDA). CFG (default projects/gated/demo_eval.yaml) selects the eval YAML; the model settings
# saved in the checkpoint (e.g. gating.type) apply unless the YAML or --options set them.
set -euo pipefail
cd "$(dirname "$0")/.."
source run_scripts/setup_env.sh

checkpoint="" split=test nproc="${NPROC:-1}" passed=()
while [ $# -gt 0 ]; do
    case "$1" in
        --split) split="$2"; shift 2 ;;
        --nproc) nproc="$2"; shift 2 ;;
        --options) passed=("$@"); break ;;
        -*) echo "eval.sh: unknown option $1 (expected --split, --nproc, --options)" >&2; exit 2 ;;
        *) checkpoint="$1"; shift ;;
    esac
done
if [ -z "$checkpoint" ]; then
    checkpoint=$(ls -t output/*/*/checkpoint_best.pth 2>/dev/null | head -n 1 || true)
fi
[ -f "$checkpoint" ] || { echo "eval.sh: no checkpoint found (${checkpoint:-none}); pass one as the first argument" >&2; exit 2; }

python -m torch.distributed.run --standalone --nproc_per_node="$nproc" --no-python lavis-gated-eval \
    --cfg-path "${CFG:-projects/gated/demo_eval.yaml}" --checkpoint "$checkpoint" --split "$split" "${passed[@]}"

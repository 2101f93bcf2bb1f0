#!/usr/bin/env bash
# Evaluate a checkpoint on one split: writes <split>_metrics.json, <split>_predictions.json and the pictures
# (training_curves.png, <split>_modulation.png) in a new folder under run.output_dir, and prints the metrics
# table.
#   bash run_scripts/eval.sh [CHECKPOINT] [--cfg-path YAML] [--split val|test] [--nproc N] [--options key=value ...]
# CHECKPOINT defaults to the newest output/*/*/checkpoint_best.pth (named on the first line). Without
# --cfg-path the run config saved in the checkpoint is the config (its model, its val/test files and style
# source): a demo checkpoint is evaluated on the demo data, an ArtQuest one on ArtQuest. With --cfg-path
# (e.g. projects/gated/artquest_eval.yaml) that YAML's data and run blocks are used; the model settings saved
# in the checkpoint still apply unless the YAML or --options set them. The config used is printed.
# --split defaults to test, --nproc to 1 (gloo on CPU, nccl on CUDA). Other lavis-gated-eval flags
# (--data-dir, --output-dir, --device, --num-threads, --max-len, --num-beams) are passed on.
set -euo pipefail
cd "$(dirname "$0")/.."
source run_scripts/setup_env.sh

checkpoint="" split=test nproc=1 passed=()
while [ $# -gt 0 ]; do
    case "$1" in
        --split) split="$2"; shift 2 ;;
        --nproc) nproc="$2"; shift 2 ;;
        --options) passed+=("$@"); break ;;
        --cfg-path|--data-dir|--images|--style-table|--output-dir|--device|--num-threads|--max-len|--num-beams)
            passed+=("$1" "$2"); shift 2 ;;
        -*) echo "eval.sh: unknown option $1 (see the header of run_scripts/eval.sh)" >&2; exit 2 ;;
        *) checkpoint="$1"; shift ;;
    esac
done
if [ -z "$checkpoint" ]; then
    checkpoint=$(ls -t output/*/*/checkpoint_best.pth 2>/dev/null | head -n 1 || true)
    [ -n "$checkpoint" ] && echo "eval.sh: checkpoint $checkpoint (the newest output/*/*/checkpoint_best.pth)"
fi
[ -f "$checkpoint" ] || { echo "eval.sh: no checkpoint found (${checkpoint:-none}); pass one as the first argument" >&2; exit 2; }

python -m torch.distributed.run --standalone --nproc_per_node="$nproc" --no-python lavis-gated-eval \
    --checkpoint "$checkpoint" --split "$split" "${passed[@]}"

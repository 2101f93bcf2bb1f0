#!/usr/bin/env bash
# Evaluate a checkpoint on the eval YAML's test split; writes <split>_metrics.json and
# <split>_predictions.json in a new run folder and prints the metrics table.
#   bash run_scripts/eval.sh [CHECKPOINT] [--options key=value ...]
# CHECKPOINT defaults to the newest checkpoint_best.pth under output/demo; CFG (default
# projects/gated/demo_eval.yaml) and NPROC (default 1) select the config and the number of processes.
set -euo pipefail
cd "$(dirname "$0")/.."
source run_scripts/setup_env.sh

checkpoint="${1:-}"
if [ -n "$checkpoint" ] && [ "${checkpoint#--}" = "$checkpoint" ]; then shift; else
    checkpoint=$(ls -d output/demo/*/checkpoint_best.pth 2>/dev/null | sort | tail -n 1)
fi
[ -f "$checkpoint" ] || { echo "eval.sh: no checkpoint found (${checkpoint:-none}); pass one as the first argument" >&2; exit 2; }
cfg="${CFG:-projects/gated/demo_eval.yaml}"
output_dir=$(python -c "import sys; from omegaconf import OmegaConf; print(OmegaConf.load(sys.argv[1]).run.output_dir)" "$cfg")

python -m torch.distributed.run --nproc_per_node="${NPROC:-1}" lavis_gated/evaluate.py --cfg-path "$cfg" \
    --options model.load_finetuned=True "model.finetuned=$(realpath "$checkpoint")" "$@"

run_dir=$(ls -d "$output_dir"/*/ | sort | tail -n 1)
for metrics in "$run_dir"*_metrics.json; do
    python -m lavis_gated.report "$metrics"
    echo "metrics: $(realpath "$metrics")"
done

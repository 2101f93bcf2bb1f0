#!/usr/bin/env bash
# The embedded default, end to end on CPU: set up .venv, generate the synthetic ArtQuest-format data, train
# the tiny model, evaluate the best checkpoint on the test split, print the metrics table, draw the pictures.
# Extra arguments go to train.py (e.g. --options run.max_epoch=2).
set -euo pipefail
cd "$(dirname "$0")/.."
source run_scripts/setup_env.sh

python -m lavis_gated.datasets.synthetic_artquest --out data/synthetic_artquest
python lavis_gated/train.py --cfg-path projects/gated/demo.yaml "$@"

run_dir=$(ls -d output/demo/*/ | sort | tail -n 1)
python -m lavis_gated.report "${run_dir}test_metrics.json"
python -m lavis_gated.plots "$run_dir"
echo "metrics: $(cd "$run_dir" && pwd)/test_metrics.json"

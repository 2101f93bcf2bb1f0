#!/usr/bin/env bash
# The embedded default, end to end on CPU: set up .venv, generate the synthetic ArtQuest-format data, train
# the tiny model, evaluate the best checkpoint on the test split, print the metrics table, draw the pictures.
# Extra arguments go to lavis-gated-train (e.g. --options run.max_epoch=2).
set -euo pipefail
cd "$(dirname "$0")/.."
source run_scripts/setup_env.sh

lavis-gated-make-demo-data --output-dir data/synthetic_artquest
lavis-gated-train --cfg-path projects/gated/demo.yaml "$@"

run_dir=$(ls -d output/demo/*/ | sort | tail -n 1)
lavis-gated-report "${run_dir}test_metrics.json"
lavis-gated-plots "$run_dir"
echo "metrics: $(cd "$run_dir" && pwd)/test_metrics.json"

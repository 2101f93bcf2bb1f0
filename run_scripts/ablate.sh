#!/usr/bin/env bash
# The demo ablation (docs/ablation.md): set up .venv, generate the synthetic data, then train and test every
# variant of projects/gated/ablation_demo.yaml (8 variants) with 5 seeds (docs/ablation.md gives the wall
# time) and write output/ablation/ablation_demo/ablation.{json,md,png}. Run it again to resume. Extra
# arguments go to lavis-gated-ablate (e.g. --seeds 3, --nproc 2, --options run.max_epoch=5).
set -euo pipefail
cd "$(dirname "$0")/.."
source run_scripts/setup_env.sh

lavis-gated-make-demo-data --output-dir data/synthetic_artquest
lavis-gated-ablate --cfg-path projects/gated/demo.yaml --variants projects/gated/ablation_demo.yaml --seeds 5 "$@"

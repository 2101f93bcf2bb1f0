#!/usr/bin/env bash
# Set up .venv if absent, then run the test suite (offline) in TEST_WORKERS pytest-xdist workers (default 2;
# 0 runs it in this process). Each worker takes its share of the cores (tests/conftest.py). Extra arguments
# go to pytest, e.g. `bash run_scripts/test.sh tests/test_model.py -n 0`.
set -euo pipefail
cd "$(dirname "$0")/.."
source run_scripts/setup_env.sh
python -m pytest -q -n "${TEST_WORKERS:-2}" --dist worksteal tests "$@"

#!/usr/bin/env bash
# Set up .venv if absent, then run the test suite (offline). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source run_scripts/setup_env.sh
python -m pytest -q tests "$@"

# Sourced by the other scripts: creates .venv from constraints.txt on first use, then activates it.
# VENV (default .venv) and PYTHON (default python3, 3.9-3.11) may be set by the caller.
VENV="${VENV:-.venv}"
if [ ! -f "$VENV/.lavis_gated_installed" ]; then
    echo "setting up $VENV (first run: installs LAVIS 1.0.2 and its pinned dependencies, a few minutes)" >&2
    "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[test]" >&2
    touch "$VENV/.lavis_gated_installed"
fi
export PATH="$(cd "$VENV" && pwd)/bin:$PATH"
# LAVIS and fairscale print deprecation warnings on import under recent torch; they are not ours to fix.
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::FutureWarning}"

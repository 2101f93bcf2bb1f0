# Sourced by the other scripts: creates .venv from constraints.txt on first use (and again whenever
# pyproject.toml or constraints.txt change), then activates it.
# VENV (default .venv) and PYTHON (default python3, 3.9-3.11) may be set by the caller.
VENV="${VENV:-.venv}"
stamp=$(cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
if [ "$(cat "$VENV/.lavis_gated_installed" 2>/dev/null)" != "$stamp" ]; then
    echo "setting up $VENV (first run: installs LAVIS 1.0.2 and its pinned dependencies, a few minutes)" >&2
    [ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[test,plots,app]" >&2
    echo "$stamp" > "$VENV/.lavis_gated_installed"
fi
export PATH="$(cd "$VENV" && pwd)/bin:$PATH"
# LAVIS and fairscale print deprecation warnings on import under recent torch; they are not ours to fix.
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::FutureWarning}"

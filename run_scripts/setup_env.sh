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
# Caption metrics tokenise with pycocoevalcap's PTB tokenizer when a Java runtime runs (docs/evaluation.md).
# Install Debian's headless one where this user may (root, or sudo without a password) and apt-get exists;
# elsewhere say nothing: the metrics then tokenise into words and name that in their JSON.
if ! command -v java >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        as_root=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root="sudo -n"
    else
        as_root="no"
    fi
    if [ "$as_root" != no ]; then
        echo "installing a Java runtime (default-jre-headless) for the caption metrics' PTB tokenizer" >&2
        { $as_root apt-get update -qq \
            && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                default-jre-headless; } >/dev/null 2>&1 \
            || echo "no Java runtime installed: caption metrics will tokenise into words" >&2
    fi
fi

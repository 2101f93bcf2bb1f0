# shellcheck shell=bash
# Source ON THE AIR-GAPPED GPU HOST, from the repo root, after the device tool copied the repo with
# `carry: [".whl"]` (wheels made here by benchmarks/gpu_host/fetch_wheels.sh):
#
#   source benchmarks/gpu_host/setup.sh
#
# Installs the carried wheels (LAVIS 1.0.2, transformers 4.26.1, huggingface_hub 0.36.2, peft 0.13.2, ...)
# into $GPU_HOST_SITE (default /tmp/site) without touching the host's own packages, puts the
# transformers version-check bypass (sitecustomize.py) there, and exports
#   PYTHONPATH=$GPU_HOST_SITE:<repo>/benchmarks/gpu_host/stubs:<repo>[:old PYTHONPATH]
#   PYTHONWARNINGS=ignore::FutureWarning
# Nothing of the project is pip-installed: the repo root on PYTHONPATH provides `lavis_gated`.
# On failure it prints why and returns (when sourced) or exits (when run) with status 1.

_gh_fail() {
    echo "gpu_host/setup.sh: $*" >&2
    return 1
}

_gh_setup() {
    local here repo site py wheels stamp_want
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)" || return 1
    repo="$(cd "$here/../.." && pwd)" || return 1
    site="${GPU_HOST_SITE:-/tmp/site}"
    py="${PYTHON:-python3}"

    command -v "$py" >/dev/null 2>&1 || { _gh_fail "no $py on PATH"; return 1; }
    "$py" -c 'import sys; assert sys.version_info[:2] == (3, 12), sys.version' 2>/dev/null ||
        { _gh_fail "$py is not Python 3.12 (the wheels in .whl/ are for CPython 3.12): $("$py" -V 2>&1)"; return 1; }
    "$py" -c 'import torch' 2>/dev/null ||
        { _gh_fail "$py cannot import torch: this is meant for the GPU host's /opt/torch/.venv python"; return 1; }

    wheels=("$repo"/.whl/*.whl)
    [ -e "${wheels[0]}" ] || {
        _gh_fail "no wheels in $repo/.whl: run 'bash benchmarks/gpu_host/fetch_wheels.sh' on a machine with PyPI and give the device tool carry: [\".whl\"]"
        return 1
    }

    # Re-install only when the set of wheels changed (the stamp lists their names).
    stamp_want="$(cd "$repo/.whl" && ls -1 ./*.whl)"
    if [ ! -f "$site/.gpu_host_wheels" ] || [ "$(cat "$site/.gpu_host_wheels")" != "$stamp_want" ]; then
        mkdir -p "$site" || { _gh_fail "cannot create $site"; return 1; }
        "$py" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target "$site" "${wheels[@]}" ||
            { _gh_fail "pip install --target $site of $repo/.whl/*.whl failed"; return 1; }
        # Stray top-level packages: the LAVIS wheel's app, docs, projects, tests and fairscale's benchmarks.
        # With $site first on PYTHONPATH they would shadow the repo's own benchmarks/, projects/ and tests/
        # folders if anything imported them by name; nothing needs them.
        rm -rf "$site/app" "$site/docs" "$site/projects" "$site/tests" "$site/benchmarks"
        printf '%s\n' "$stamp_want" >"$site/.gpu_host_wheels"
    fi
    cp "$here/sitecustomize.py" "$site/sitecustomize.py" || { _gh_fail "cannot copy sitecustomize.py to $site"; return 1; }

    local entry new="$site:$here/stubs:$repo"
    local -a old=()
    IFS=: read -r -a old <<<"${PYTHONPATH:-}"
    for entry in "${old[@]}"; do  # keep the caller's entries after ours, without repeating ours
        case ":$new:" in *":$entry:"*) ;; *) [ -n "$entry" ] && new="$new:$entry" ;; esac
    done
    export PYTHONPATH="$new"
    export PYTHONWARNINGS="ignore::FutureWarning"

    # The carried versions must win over the host's (transformers 5.x, huggingface_hub 1.x, new peft).
    "$py" - "$site" <<'EOF' || { _gh_fail "the carried packages do not import (see above)"; return 1; }
import os, sys
site = os.path.realpath(sys.argv[1])
import huggingface_hub, omegaconf, transformers, peft, pycocoevalcap, lavis  # noqa: E401
from pycocoevalcap.cider.cider import Cider  # noqa: F401  (the slim wheel keeps the Python scorers)
want = {"transformers": "4.26.1", "huggingface_hub": "0.36.2", "peft": "0.13.2"}
for mod in (transformers, huggingface_hub, peft, pycocoevalcap, omegaconf, lavis):
    where = os.path.realpath(mod.__file__ or next(iter(mod.__path__)))  # pycocoevalcap: a namespace package
    if not where.startswith(site + os.sep):
        sys.exit(f"{mod.__name__} comes from {where}, not from {site}")
    if mod.__name__ in want and mod.__version__ != want[mod.__name__]:
        sys.exit(f"{mod.__name__} {mod.__version__}, expected {want[mod.__name__]}")
import lavis_gated  # noqa: E402,F401  (the repo root on PYTHONPATH)
EOF
}

if _gh_setup; then
    unset -f _gh_setup _gh_fail
    echo "gpu_host/setup.sh: ready (PYTHONPATH=$PYTHONPATH)" >&2
else
    unset -f _gh_setup _gh_fail
    # Sourced: return to the caller with status 1; run as a script: exit 1.
    return 1 2>/dev/null || exit 1
fi

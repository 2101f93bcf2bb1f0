#!/usr/bin/env bash
# Run HERE (a machine with PyPI), from anywhere inside the repo: fills <repo>/.whl/ with exactly the
# cp312 / py3 wheels that LAVIS 1.0.2 + lavis_gated need on the air-gapped GPU host, on top of what
# the host already has (Python 3.12, torch 2.11, torchvision 0.26, timm 1.x, numpy 2.x, pandas, pillow,
# accelerate, tokenizers 0.23, safetensors, portalocker, einops, requests, opencv-python-headless, ...).
# Idempotent: wheels already present are kept, anything else in .whl/ is removed (two versions of one
# package would stop the host's install), and /.whl/ is added to .git/info/exclude.
#
#   bash benchmarks/gpu_host/fetch_wheels.sh          # PYTHON=... picks the python whose pip is used
#
# The device tool then needs `carry: [".whl"]`; benchmarks/gpu_host/setup.sh installs them there.
set -euo pipefail

REPO="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
cd "$REPO"
PY="${PYTHON:-python3}"
WHL="$REPO/.whl"

# Versions as in constraints.txt (the set tested with lavis_gated), except what the host already has.
#   salesforce-lavis   the library itself (pure py3)
#   transformers       4.26.1: BLIP-2 OPT beam search works only there (LAVIS_FACTS); host has 5.x
#   huggingface_hub    0.36.2: transformers 4.26 needs < 1.0; host has 1.x
#   omegaconf          2.4.0 as in constraints.txt (pure py3, no antlr4 dependency any more)
#   iopath, fairscale  imported by `import lavis`; sdist-only on PyPI, built here as py3 wheels
#   webdataset         imported by lavis and by lavis_gated.runners.runner_gated; needs braceexpand
#   ftfy               lavis.processors.blip_processors; needs wcwidth
#   pycocotools        lavis.tasks.captioning/dialogue/vqa import it at module level (cp312 abi3 wheel)
#   peft               0.13.2: the host's newer peft does not import beside transformers 4.26.1
#   pycocoevalcap      1.2: the task's BLEU/ROUGE-L/CIDEr scorers (pure Python). Its wheel is 104 MB, over the
#                      device tool's 64 MiB carry limit, almost all Java jars and METEOR's paraphrase table,
#                      which only the PTB tokenizer, METEOR and SPICE use (Java; not used by lavis_gated);
#                      slim() rewrites it without them (every .py file kept, so LAVIS's imports still work).
# Not needed: contexttimer (declared by LAVIS, imported nowhere in it), antlr4 (omegaconf 2.4 has none),
# portalocker/einops (on the host); decord and spacy are replaced by stubs/ (no wheels).
BINARY=(
    salesforce-lavis==1.0.2
    transformers==4.26.1
    huggingface_hub==0.36.2
    omegaconf==2.4.0
    webdataset==1.0.2
    braceexpand==0.1.7
    ftfy==6.3.1
    wcwidth==0.9.4
    pycocotools==2.0.11
    peft==0.13.2
    pycocoevalcap==1.2
)
SLIM=(pycocoevalcap==1.2)  # rewritten without their Java/data files (see above)
SDIST=(
    fairscale==0.4.4
    iopath==0.1.10
)

# Wheel file-name prefix of a "name==version" spec (PEP 427: runs of -_. become _, case-folded).
prefix() {
    local name="${1%%==*}" version="${1##*==}"
    name="$(printf '%s' "$name" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/_/g')"
    printf '%s-%s-' "$name" "$version"
}
have() {  # have SPEC: a wheel for it is already in .whl/
    local p f
    p="$(prefix "$1")"
    for f in "$WHL"/*.whl; do
        [ -e "$f" ] || continue
        local base
        base="$(basename "$f" | tr 'A-Z' 'a-z')"
        [[ "$base" == "$p"* ]] && return 0
    done
    return 1
}

mkdir -p "$WHL" "$(git rev-parse --git-path info)"
exclude="$(git rev-parse --git-path info/exclude)"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"

PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64 manylinux_2_24_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64; do
    PLATFORMS+=(--platform "$p")
done

# slim WHEEL: rewrite it in place without *.jar and *.gz files (and their RECORD lines).
slim() {
    "$PY" - "$1" <<'EOF_SLIM'
import os, sys, zipfile
path = sys.argv[1]
dropped = lambda name: name.endswith((".jar", ".gz"))
tmp = path + ".slim"
with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist():
        if dropped(info.filename):
            continue
        data = src.read(info)
        if info.filename.endswith(".dist-info/RECORD"):
            lines = data.decode().splitlines(keepends=True)
            data = "".join(l for l in lines if not dropped(l.split(",", 1)[0])).encode()
        dst.writestr(info, data)
os.replace(tmp, path)
EOF_SLIM
}

for spec in "${BINARY[@]}"; do
    have "$spec" && continue
    echo "download $spec" >&2
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none "${PLATFORMS[@]}" \
        -d "$WHL" "$spec"
done
for spec in "${SLIM[@]}"; do
    for f in "$WHL/$(prefix "$spec")"*.whl; do
        [ -e "$f" ] || continue
        [ "$(stat -c %s "$f")" -gt 2000000 ] || continue  # already slim
        echo "slim $(basename "$f")" >&2
        slim "$f"
    done
done

if [ "${#SDIST[@]}" -gt 0 ]; then
    need=()
    for spec in "${SDIST[@]}"; do have "$spec" || need+=("$spec"); done
    if [ "${#need[@]}" -gt 0 ]; then
        # Pure-python sdists: build py3-none-any wheels without build isolation (fairscale's build
        # would otherwise resolve torch); only setuptools + wheel are needed in the building python.
        BPY="$PY"
        if ! "$BPY" -c 'import setuptools, wheel' 2>/dev/null; then
            BVENV="${TMPDIR:-/tmp}/lavis_gated_wheelbuild"
            [ -x "$BVENV/bin/python" ] || "$PY" -m venv "$BVENV"
            "$BVENV/bin/python" -m pip install --quiet --disable-pip-version-check setuptools wheel
            BPY="$BVENV/bin/python"
        fi
        for spec in "${need[@]}"; do
            echo "build $spec (sdist -> py3 wheel)" >&2
            BUILD_CUDA_EXTENSIONS=0 "$BPY" -m pip wheel --quiet --disable-pip-version-check --no-deps \
                --no-build-isolation --no-binary=:all: -w "$WHL" "$spec"
        done
    fi
fi

# Keep exactly the wanted wheels; all must be installable on CPython 3.12 x86-64.
for f in "$WHL"/*; do
    [ -e "$f" ] || continue
    base="$(basename "$f" | tr 'A-Z' 'a-z')"
    keep=0
    for spec in "${BINARY[@]}" "${SDIST[@]}"; do
        [[ "$base" == "$(prefix "$spec")"* && "$base" == *.whl ]] && keep=1
    done
    if [ "$keep" = 0 ]; then
        echo "remove stale $(basename "$f")" >&2
        rm -rf "$f"
    fi
done
for spec in "${BINARY[@]}" "${SDIST[@]}"; do
    have "$spec" || { echo "fetch_wheels: no wheel for $spec in $WHL" >&2; exit 1; }
done
for f in "$WHL"/*.whl; do
    case "$(basename "$f")" in
        *-py3-none-any.whl | *-py2.py3-none-any.whl | *-cp312-*x86_64*.whl | *-abi3-*x86_64*.whl) ;;
        *) echo "fetch_wheels: $(basename "$f") does not fit CPython 3.12 x86-64" >&2; exit 1 ;;
    esac
done

total_kb=$(du -sk "$WHL" | cut -f1)
if [ "$total_kb" -gt 49152 ]; then  # the device tool carries 64 MiB in all, the repo included
    echo "fetch_wheels: $WHL holds ${total_kb} kB, too much to carry" >&2
    exit 1
fi
ls -l "$WHL" | awk 'NR>1 {printf "%9.1f kB  %s\n", $5/1024, $9}'
du -sh "$WHL" | awk '{print "total " $1}'

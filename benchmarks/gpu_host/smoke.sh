#!/usr/bin/env bash
# GPU smoke test of lavis_gated's real CUDA path on the air-gapped GPU host. Device tool command, from the
# repo root, with the wheels made by fetch_wheels.sh carried (carry: [".whl"]):
#
#   bash benchmarks/gpu_host/smoke.sh
#
#   0. source setup.sh (carried wheels -> /tmp/site, decord/spacy stubs, transformers
#      version-check bypass; the repo root on PYTHONPATH gives lavis_gated, nothing is pip-installed)
#   1. versions (python, torch, CUDA, transformers, timm, lavis, peft, ...) and the GPU's name
#   2. the synthetic ArtQuest data (data/ is git-ignored, so the device copy has none)
#   3. dtype probe, informational: the dtype each part of the tiny model runs in under each autocast
#   4. fp16 amp + GradScaler, 3 epochs, torchrun (nccl)       -> output/gpu_fp16
#   5. bf16 amp (no scaler), 2 epochs, torchrun (nccl)         -> output/gpu_bf16
#   6. fp32 (run.amp=False), the full 20-epoch demo, torchrun  -> output/gpu_fp32
# Every step runs under `timeout`, and all of them within SMOKE_BUDGET_S (default 540 s, so that a device
# call with timeout_s=600 still gets $OUT back). set -e stops the script at a failed set-up step (1-2);
# a failed or timed-out training run is recorded and the next one still runs (one device call gives every
# result), and the script then exits 1. The last line is `SMOKE OK` only if every step succeeded.
#
# $OUT (the device tool's output folder; /tmp/out when unset) gets 7 small files: summary.txt (versions,
# dtype probe, wall time of each step, each run's test_metrics.json and the tail of its log.txt),
# {fp16,bf16,fp32}.log (each run's console output) and {fp16,bf16,fp32}_test_metrics.json.
#
# Dry run of the plumbing on a machine without a GPU (not a substitute for the GPU run):
#   SMOKE_DEVICE=cpu SMOKE_DATA_ARGS="--train 2 --val 1 --test 1" SMOKE_FP32_EPOCHS=2 bash benchmarks/gpu_host/smoke.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT="${OUT:-/tmp/out}"
DEVICE="${SMOKE_DEVICE:-cuda}"
BUDGET="${SMOKE_BUDGET_S:-540}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"  # the host's python3 is the /opt/torch/.venv one, with torch
START=$(date +%s)
SCRATCH=$(mktemp)

say() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo "$(( $(date +%s) - START ))"; }
limit() {  # limit WANT_S: WANT_S, or less so that the whole script ends within $BUDGET (10 s reserve)
    local left=$(( START + BUDGET - 10 - $(date +%s) ))
    if [ "$left" -lt "$1" ]; then echo $(( left > 1 ? left : 1 )); else echo "$1"; fi
}

say "== smoke start $(date -u +%FT%TZ) on $(hostname), device $DEVICE, budget ${BUDGET}s"
# shellcheck source=/dev/null
if ! source benchmarks/gpu_host/setup.sh >"$SCRATCH" 2>&1; then
    tee -a "$SUMMARY" <"$SCRATCH"
    say "SMOKE FAILED: setup.sh"
    exit 1
fi
{ grep -v "SyntaxWarning\|re.compile" "$SCRATCH" || true; } | tee -a "$SUMMARY"
# LAVIS 1.0.2's vqa_eval.py has invalid escapes: Python 3.12 warns at each compile (harmless noise).
export PYTHONWARNINGS="$PYTHONWARNINGS,ignore::SyntaxWarning"
T_SETUP=$(elapsed)
say "== setup: ${T_SETUP}s"

export SMOKE_DEVICE="$DEVICE"
if ! timeout -k 5 "$(limit 60)" "$PY" - 2>&1 <<'EOF' | tee -a "$SUMMARY"
import os, platform, importlib.metadata as md
import torch, transformers, timm, lavis, peft, numpy, huggingface_hub
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| cudnn", torch.backends.cudnn.version(),
      "| nccl", ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else "-")
print("transformers", transformers.__version__, "| huggingface_hub", huggingface_hub.__version__,
      "| tokenizers", md.version("tokenizers"), "| timm", timm.__version__, "| lavis", md.version("salesforce-lavis"),
      "| peft", peft.__version__, "| numpy", numpy.__version__, "| torchvision", md.version("torchvision"))
if os.environ["SMOKE_DEVICE"].startswith("cuda"):
    assert torch.cuda.is_available(), "CUDA is not available"
    print("GPU", torch.cuda.get_device_name(0), "| capability", torch.cuda.get_device_capability(0),
          "| bf16 supported", torch.cuda.is_bf16_supported())
EOF
then
    say "SMOKE FAILED: versions / CUDA check"
    exit 1
fi

t0=$(date +%s)
# shellcheck disable=SC2086
if ! timeout -k 5 "$(limit 120)" "$PY" -m lavis_gated.datasets.synthetic_artquest --output-dir data/synthetic_artquest \
        ${SMOKE_DATA_ARGS:-} >"$SCRATCH" 2>&1; then
    tail -n 20 "$SCRATCH" | tee -a "$SUMMARY"
    say "SMOKE FAILED: synthetic data"
    exit 1
fi
T_DATA=$(( $(date +%s) - t0 ))
say "== data: ${T_DATA}s, $(( $(wc -l <data/synthetic_artquest/artquest_train.csv) - 1 )) train rows"

# LAVIS's Blip2Base.maybe_autocast (blip2.py:36-44) opens an fp16 autocast on any non-CPU device around the
# ViT and OPT forwards, inside the task's autocast: this shows what each run's dtype setting really gives.
t0=$(date +%s)
timeout -k 5 "$(limit 90)" "$PY" - 2>&1 <<'EOF' | grep -v "^Not using distributed\|random weights" | tee -a "$SUMMARY" || say "(dtype probe failed; informational only, not counted)"
import os, torch, lavis_gated  # noqa: F401
from lavis.models import load_model_and_preprocess
device = os.environ["SMOKE_DEVICE"]
kind = torch.device(device).type
model, _, _ = load_model_and_preprocess("blip2_opt_gated", "tiny", is_eval=False, device=device)
seen = {}
def hook(name):
    def record(module, args, out):  # returns None: a forward hook's return value would replace the output
        seen.setdefault(name, (out[0] if isinstance(out, tuple) else out).dtype)
    return record
qformer = model.Qformer.bert.encoder.layer[0]
for name, module in (("vit fc1", model.visual_encoder.blocks[0].mlp.fc1), ("style cnn", model.style_encoder.cnn.conv1),
                     ("qformer query", qformer.attention.self.query), ("cross-attn key", qformer.crossattention.self.key),
                     ("opt_proj", model.opt_proj), ("opt fc1", model.opt_model.model.decoder.layers[0].fc1),
                     ("lm_head", model.opt_model.lm_head)):
    module.register_forward_hook(hook(name))  # Linear/Conv outputs: the dtype the matmul ran in
samples = {"image": torch.randn(2, 3, 64, 64, device=device), "text_input": ["what style is this painting"] * 2,
           "answer": ["cubism", "pop art"], "style": ["cubism", "pop art"]}
for label, enabled, dtype in (("amp off", False, torch.float32), ("amp fp16", True, torch.float16),
                              ("amp bf16", True, torch.bfloat16)):
    seen.clear()
    with torch.autocast(kind, dtype=dtype, enabled=enabled):
        loss = model(samples)["loss"]
    loss.backward()
    print(f"dtype probe, {label:8s}: " + ", ".join(f"{k} {str(v)[6:]}" for k, v in seen.items())
          + f" | loss {loss.item():.4f}")
EOF
T_PROBE=$(( $(date +%s) - t0 ))
say "== dtype probe: ${T_PROBE}s"

declare -A WALL=() RC=()
FAILED=()
train_run() {  # train_run NAME WANT_TIMEOUT_S OUTPUT_DIR OPTIONS...
    local name=$1 want=$2 outdir=$3 rc=0 t0 run_dir lim
    shift 3
    lim=$(limit "$want")
    rm -rf "$outdir"
    if [ "$lim" -lt 20 ]; then
        say "-- $name: SKIPPED, only ${lim}s of SMOKE_BUDGET_S=${BUDGET} left"
        WALL[$name]=0
        RC[$name]=skipped
        FAILED+=("$name")
        return 0
    fi
    say "== $name: torchrun lavis_gated/train.py --options $* run.output_dir=$outdir (timeout ${lim}s)"
    t0=$(date +%s)
    timeout -k 10 "$lim" "$PY" -m torch.distributed.run --nproc_per_node=1 lavis_gated/train.py \
        --cfg-path projects/gated/demo.yaml --options "$@" run.output_dir="$outdir" \
        >"$OUT/$name.log" 2>&1 || rc=$?
    WALL[$name]=$(( $(date +%s) - t0 ))
    RC[$name]=$rc
    run_dir=$(ls -d "$outdir"/*/ 2>/dev/null | sort | tail -n 1 || true)
    if [ "$rc" = 0 ] && [ -n "$run_dir" ] && [ -f "${run_dir}test_metrics.json" ]; then
        cp "${run_dir}test_metrics.json" "$OUT/${name}_test_metrics.json"
        say "-- $name: ok, ${WALL[$name]}s wall"
        "$PY" - "${run_dir}test_metrics.json" <<'EOF' | tee -a "$SUMMARY" || true
import json, sys
m = json.load(open(sys.argv[1]))
em = m.get("em_by_type", {})
print(f"   test: style EM {em.get('style', float('nan')):.4f} | style_head_acc {m['style_head_acc']:.4f}"
      f" | EM {m['em']:.4f} | shape EM {em.get('shape', float('nan')):.4f} | loss {m['loss']:.4f}")
EOF
        echo "   ${run_dir}test_metrics.json:" >>"$SUMMARY"
        sed 's/^/   /' "${run_dir}test_metrics.json" >>"$SUMMARY"
        echo >>"$SUMMARY"
    else
        if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
            say "-- $name: TIMED OUT after ${lim}s"
        else
            say "-- $name: FAILED (exit $rc), ${WALL[$name]}s wall"
        fi
        FAILED+=("$name")
        echo "   last lines of $name.log:" >>"$SUMMARY"
        { grep -v "SyntaxWarning\|re.compile" "$OUT/$name.log" || true; } | tail -n 40 | sed 's/^/   | /' | tee -a "$SUMMARY"
    fi
    if [ -n "$run_dir" ] && [ -f "${run_dir}log.txt" ]; then
        echo "   tail of ${run_dir}log.txt:" >>"$SUMMARY"
        tail -n 3 "${run_dir}log.txt" | cut -c1-700 | sed 's/^/   | /' >>"$SUMMARY"
    fi
    grep -E "Total time|Training time" "$OUT/$name.log" | tail -n 4 | sed 's/^/   /' | tee -a "$SUMMARY" || true
}

COMMON=(run.device="$DEVICE" run.num_workers=2)
train_run fp16 150 output/gpu_fp16 "${COMMON[@]}" run.amp=True run.amp_dtype=float16 run.max_epoch=3
train_run bf16 120 output/gpu_bf16 "${COMMON[@]}" run.amp=True run.amp_dtype=bfloat16 run.max_epoch=2
train_run fp32 300 output/gpu_fp32 "${COMMON[@]}" run.amp=False run.max_epoch="${SMOKE_FP32_EPOCHS:-20}"

say "== wall times (s): setup ${T_SETUP}, data ${T_DATA}, dtype probe ${T_PROBE}, fp16 x3 epochs ${WALL[fp16]}" \
    "(rc ${RC[fp16]}), bf16 x2 epochs ${WALL[bf16]} (rc ${RC[bf16]}), fp32 x${SMOKE_FP32_EPOCHS:-20} epochs" \
    "${WALL[fp32]} (rc ${RC[fp32]}); total $(elapsed)"
rm -f "$SCRATCH"
if [ "${#FAILED[@]}" -gt 0 ]; then
    say "SMOKE FAILED: ${FAILED[*]}"
    exit 1
fi
say "SMOKE OK"

#!/usr/bin/env bash
# The GPU rows of the README's "Performance" section, on the air-gapped GPU host (see smoke.sh for the set-up):
# LAVIS's Blip2OPT against blip2_opt_gated at full size (EVA ViT-g, BERT-base Q-Former, OPT-2.7B, EfficientNet-B3;
# random weights), 224 px, one process per row, steps alternating between the models. Device tool command, from
# the repo root, with the wheels made by fetch_wheels.sh carried (carry: [".whl"]):
#
#   bash benchmarks/gpu_host/step_time.sh
#
#   1. fp16 amp, batch 16: baseline, gated, gated fast (cached frozen features)
#   2. fp16 amp, batch 32: the same
#   3. bf16 amp, batch 32: the same (the trainable path in bf16; the frozen ViT/OPT stay fp16, as in LAVIS)
#   4. fp16 amp, batch 32: the same plus the fast path compiled (model.compile_mode: reduce-overhead); last,
#      because it compiles: a compile failure or a timeout there loses no other row
# Each row runs under `timeout`, all within STEP_TIME_BUDGET_S (default 560 s, so that a device call with
# timeout_s=600 still gets $OUT back); a failed or timed-out row is recorded and the next one still runs.
# STEP_TIME_ARGS adds arguments to every row (e.g. "--rounds 20"); STEP_TIME_ROWS="4" picks rows (a call
# per row gives each the whole budget);
# STEP_TIME_SETUP=0 uses the current Python environment as it is (a GPU machine with LAVIS installed).
# Dry run of the plumbing without a GPU (amp is then off; not a substitute for the GPU run):
#   STEP_TIME_SETUP=0 STEP_TIME_DEVICE=cpu STEP_TIME_SIZE=tiny STEP_TIME_ROWS="1 2" bash benchmarks/gpu_host/step_time.sh
#
# $OUT (default /tmp/out) gets step_time.jsonl (every JSON line, each with its row's settings), row<N>.log
# (each row's console output) and summary.txt. The last line is `STEP TIME OK` only if every row succeeded.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT="${OUT:-/tmp/out}"
BUDGET="${STEP_TIME_BUDGET_S:-560}"
ROWS="${STEP_TIME_ROWS:-1 2 3 4}"
SIZE="${STEP_TIME_SIZE:-full}"
DEVICE="${STEP_TIME_DEVICE:-cuda}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
JSONL="$OUT/step_time.jsonl"
: >"$SUMMARY"
: >"$JSONL"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
START=$(date +%s)

say() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $(( START + BUDGET - 5 - $(date +%s) )); }

say "== step_time start $(date -u +%FT%TZ) on $(hostname), budget ${BUDGET}s"
if [ "${STEP_TIME_SETUP:-1}" = 1 ]; then
    # shellcheck source=/dev/null
    if ! source benchmarks/gpu_host/setup.sh >>"$SUMMARY" 2>&1; then
        tail -n 20 "$SUMMARY"
        say "STEP TIME FAILED: setup.sh"
        exit 1
    fi
fi
export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore::SyntaxWarning,ignore::UserWarning,ignore::FutureWarning"
"$PY" -c 'import torch; print("torch", torch.__version__, "| CUDA", torch.version.cuda, "|",
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")' 2>&1 | tee -a "$SUMMARY"

declare -A ROW_ARGS=(
    [1]="--amp fp16 --batch-size 16 --fast"
    [2]="--amp fp16 --batch-size 32 --fast"
    [3]="--amp bf16 --batch-size 32 --fast"
    [4]="--amp fp16 --batch-size 32 --fast --compile reduce-overhead"
)
declare -A WANT=([1]=110 [2]=110 [3]=110 [4]=300)  # row 4 compiles (eval and training graphs) before it times
FAILED=()
for row in $ROWS; do
    lim=$(left)
    [ "$lim" -gt "${WANT[$row]}" ] && lim=${WANT[$row]}
    if [ "$lim" -lt 60 ]; then
        say "-- row $row: SKIPPED, ${lim}s left of the ${BUDGET}s budget"
        FAILED+=("$row")
        continue
    fi
    row_args="${ROW_ARGS[$row]}"
    if [ "$DEVICE" = cpu ]; then  # LAVIS's blip2_opt autocasts on CUDA only
        row_args="${row_args/--amp fp16/--amp none}"
        row_args="${row_args/--amp bf16/--amp none}"
    fi
    # shellcheck disable=SC2206  # word splitting of the argument lists is intended
    args=(--size "$SIZE" --device "$DEVICE" $row_args ${STEP_TIME_ARGS:-})
    say "== row $row: benchmarks/step_time.py ${args[*]} (timeout ${lim}s)"
    t0=$(date +%s)
    rc=0
    timeout -k 10 "$lim" "$PY" benchmarks/step_time.py "${args[@]}" >"$OUT/row$row.log" 2>&1 || rc=$?
    grep '^{' "$OUT/row$row.log" >>"$JSONL" || true
    "$PY" - "$OUT/row$row.log" <<'EOF' | tee -a "$SUMMARY" || true
import json, sys
for line in open(sys.argv[1]):
    if line.startswith("{"):
        r = json.loads(line)
        if "error" in r:
            continue  # printed below
        ratio = r.get("ratio_to_baseline") or {}
        print(f"   {r['model']:45s} {r['ms_per_step']:8.1f} ms  {r['samples_per_s']:7.1f} samples/s  "
              f"peak {r['peak_memory_bytes'] / 2**30:5.2f} GiB  ratio {ratio.get('step_time_median', 1.0):.3f} "
              f"{ratio.get('step_time_quartiles', '')}  memory ratio {ratio.get('peak_memory', 1.0)}  shares {r['shares']}"
              + (f"  eval loss diff {r['eval_loss_abs_diff_vs_plain']:.2e}" if "eval_loss_abs_diff_vs_plain" in r else "")
              + (f"  skipped steps {r['skipped_steps']}" if r.get("skipped_steps") else "")
              + (f"  compile {r['compile_counters']}" if "compile_counters" in r else ""))
EOF
    grep '"error"' "$OUT/row$row.log" | sed 's/^/   /' | tee -a "$SUMMARY" || true
    if [ "$rc" = 0 ] && ! grep -q '"error"' "$OUT/row$row.log"; then
        say "-- row $row: ok, $(( $(date +%s) - t0 ))s"
    else
        why="exit $rc$( [ "$rc" = 124 ] && echo ', timed out' )$( [ "$rc" = 0 ] && echo ', a model reported an error' )"
        say "-- row $row: FAILED ($why), $(( $(date +%s) - t0 ))s"
        grep -v "SyntaxWarning\|re.compile" "$OUT/row$row.log" | tail -n 30 | sed 's/^/   | /' | tee -a "$SUMMARY"
        FAILED+=("$row")
    fi
done
say "== total $(( $(date +%s) - START ))s"
if [ "${#FAILED[@]}" -gt 0 ]; then
    say "STEP TIME FAILED: rows ${FAILED[*]}"
    exit 1
fi
say "STEP TIME OK"

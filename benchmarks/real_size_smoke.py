"""Real-size CPU smoke run: blip2_opt_gated `pretrain_opt2.7b` at its real size, random weights, offline.

    python benchmarks/real_size_smoke.py                        # pretrain_opt2.7b, --precision auto
    python benchmarks/real_size_smoke.py --precision fp32 --threads 2
    python benchmarks/real_size_smoke.py --model-type tiny      # the same run at toy size, in seconds
    python benchmarks/real_size_smoke.py --batch-size 8 --threads 2 --task-options style_probe_share=0.125

EVA ViT-g (39 x 1408), BERT-base Q-Former, OPT-2.7B and EfficientNet-B3 (300 px, random: allow_random) are
built from the type's YAML with every source a local stand-in (lavis_gated.offline.standins: the real configs
and a synthetic tokenizer as large as OPT's, 50265 tokens for 50272 embedding rows). Then: one training step
with the style_captioning task's loss (the demo's weights: lm 1, style_name 0.1, style_kl 0.1, style_ce 1.0,
the style probe on run.style_probe_share of the labelled rows; --task-options key=value ... changes them),
backward and an AdamW step, failing if a frozen parameter got a gradient or a trainable one did not; then the
style terms' cost, timed in this one process: --rounds rounds of three training steps, in turn LM only (every
style weight 0: no probe), the task's loss (the probe at its share), and the task's loss with the probe on
every labelled row; means (the share's draw changes with the round) and their ratios to the LM-only step. The
batch is --batch-size rows of ArtQuest questions (artist, title, school, ...), each with a style label. Then
one generate and one predict_answers (beam search, LAVIS's defaults). Printed first: the CPU (model, torch's
CPU capability, its bf16 flags), the precision chosen and why, and the memory the run needs against what is
available; then build, step and generation times, the style terms' timings, peak RSS (ru_maxrss), each with
the precision and CPU capability beside it, and parameter counts (total / trainable, per part), one per line;
then all of it as one JSON line.

Frozen parts' precision (--precision, default auto; lavis_gated/models/precision.py decides): auto computes
the ViT and OPT in bf16 where the CPU does natively (AVX512-BF16 or AMX: an OPT-2.7B-sized matmul ran 5-7x
faster than fp32 on an AMD EPYC with AVX512-BF16), in fp32 elsewhere: on an AVX2 CPU bf16 is emulated, and a
training step in bf16 (batch 2) was still in its backward after 15 min where fp32 took 3 min (batch 1). An
explicit bf16 runs anyway, with a warning. fp16 is computed in fp32 on CPU.

Memory: measured peak RSS of this run, fp32 19.2 GiB (an AVX2 AMD EPYC, batch 2, its steps with the probe on
every row included), bf16 9.6 GiB (an AMD EPYC with AVX512-BF16, batch 1, before those steps). Before
building, the run states what it needs (NEED_GIB) and refuses (exit status 2) when the memory available
(MemAvailable of /proc/meminfo, plus what this process already holds) is less; --no-memory-check runs anyway.
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import statistics  # noqa: E402

from benchmark_models import QUESTIONS, build_task  # noqa: E402  (this folder: the demo's loss, its rows)
from lavis.common.registry import registry  # noqa: E402

import lavis_gated  # noqa: E402,F401  (registration)
from lavis_gated.configs.model_config import PRECISIONS  # noqa: E402
from lavis_gated.models.precision import cpu_precision  # noqa: E402
from lavis_gated.offline.standins import random_model_config  # noqa: E402
from lavis_gated.tasks.losses import probe_rows, row_keys  # noqa: E402

STYLE = "impressionism"
QUESTION = QUESTIONS[0][0]
LM_ONLY = ("style_name_weight=0", "style_kl_weight=0", "style_ce_weight=0")
GiB = 2**30
# What a run needs at its peak, by model type and the precision the frozen parts compute in: the measured
# peak RSS (module docstring) rounded up by about 4 %; bf16's was measured before the steps with the probe
# on every row, so its need is scaled by fp32's growth (19.2 / 17.3). Types not listed were not measured: no
# check.
NEED_GIB = {"pretrain_opt2.7b": {"fp32": 20.0, "bf16": 11.0}}
MEASURED_PEAK_GIB = {"fp32": 19.2, "bf16": 9.6}


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def meminfo_bytes(field, path="/proc/meminfo"):
    """A /proc/meminfo (or /proc/self/status) field in bytes; None where the file or field is missing."""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


def memory_check(model_type, computed_in):
    """(what the run needs against what is available, in words; whether it may run). Available: MemAvailable
    plus this process's RSS (already part of the peak). Unknown need or memory: it may run."""
    need = NEED_GIB.get(model_type, {}).get(computed_in)
    if need is None:
        return f"no measured need for {model_type} in {computed_in}: not checked", True
    stated = (
        f"{model_type} in {computed_in} needs about {need:.0f} GiB at its peak "
        f"({MEASURED_PEAK_GIB[computed_in]} GiB peak RSS measured)"
    )
    available, held = meminfo_bytes("MemAvailable"), meminfo_bytes("VmRSS", "/proc/self/status") or 0
    if available is None:
        return f"{stated}; free memory unknown (no MemAvailable): not checked", True
    usable = (available + held) / GiB
    stated += (
        f"; available {usable:.1f} GiB (MemAvailable {available / GiB:.1f} + this process {held / GiB:.1f})"
    )
    return stated, usable >= need


def refusal(stated, choice):
    """The message of a run refused for memory: what it needs, what there is, what to do instead."""
    smaller = (
        " or --precision bf16, which this CPU computes natively (about half of the memory)"
        if choice.precision == "fp32" and choice.features.native_bf16
        else ""
    )
    return (
        f"real_size_smoke: not enough free memory to run: {stated}. Free memory or use a larger "
        f"machine{smaller}; --model-type tiny runs the same code at toy size; --no-memory-check runs anyway "
        "(the kernel may kill the run)."
    )


def parameter_counts(model):
    """{part: {"total", "trainable"}}: parts are the model's top-level modules, LoRA adapters apart."""
    counts = {}
    for name, p in model.named_parameters():
        part = "lora" if ".lora_" in name else name.split(".")[0]
        entry = counts.setdefault(part, {"total": 0, "trainable": 0})
        entry["total"] += p.numel()
        entry["trainable"] += p.numel() if p.requires_grad else 0
    return counts


def training_step(model, samples, task_options=(), optimizer=None, check=True):
    """One step of the task's loss (the demo's, with task_options) with AdamW; returns (loss, seconds).
    Raises if gradients went astray (check)."""
    task = build_task(task_options)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = optimizer or torch.optim.AdamW(trainable, lr=1e-5, weight_decay=0.05)
    model.train()
    start = time.perf_counter()
    loss = task.train_step(model, samples)
    loss.backward()
    frozen_with_grad = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    without_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if check and (frozen_with_grad or without_grad or not torch.isfinite(loss)):
        raise RuntimeError(
            f"training step went wrong: loss {loss.item()}; frozen parameters with a "
            f"gradient: {frozen_with_grad[:10]}; trainable ones without: {without_grad[:10]}"
        )
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item(), time.perf_counter() - start


def style_term_timings(model, samples, task_options, rounds):
    """{setting: mean seconds of a training step} for LM only, the task's loss (the probe at its share) and
    the probe on every labelled row, run in turn for `rounds` rounds, and the ratios to LM only.

    Round r is epoch r of the probe's draw (losses.probe_rows: each labelled row is probed with chance
    run.style_probe_share, by a hash of its question_id, the seed and the epoch), so at the default share
    the rows probed change from round to round as in training: the mean is the expected cost of a step,
    and probed_rows gives each round's count."""
    settings = {
        "lm_only": [*task_options, *LM_ONLY],
        "probe_default_share": list(task_options),
        "probe_every_labelled_row": [*task_options, "style_probe_share=1.0", "style_probe_max_rows=null"],
    }
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, weight_decay=0.05)
    times = {name: [] for name in settings}
    probed = {name: [] for name in settings if name != "lm_only"}
    for epoch in range(rounds):
        batch = {**samples, "epoch": epoch}
        for name, options in settings.items():
            times[name].append(training_step(model, batch, options, optimizer, check=False)[1])
            if name in probed:
                probed[name].append(_probed(batch, options))
    means = {name: statistics.mean(t) for name, t in times.items()}
    return {
        "step_s": {name: round(t, 2) for name, t in means.items()},
        "ratio_to_lm_only": {name: round(t / means["lm_only"], 3) for name, t in means.items()},
        "probed_rows": probed,
    }


def _probed(samples, options):
    """Rows the probe scores in this step under the task settings `options` (every row is labelled)."""
    task = build_task(options)
    config = task.config
    rows = probe_rows(
        [0] * len(samples["answer"]),
        config.style_probe_share,
        config.style_probe_max_rows,
        keys=row_keys(samples),
        draw=f"{task.seed}|{samples['epoch']}",
    )
    return sum(rows)


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def run(args, root):
    # the setting as given: the model decides what it computes in with the same function (auto included)
    cfg, _ = random_model_config(
        args.model_type, root, vit_precision=args.precision, opt_precision=args.precision
    )
    model, build_s = timed(lambda: registry.get_model_class("blip2_opt_gated").from_config(cfg))
    size, batch = cfg.image_size, args.batch_size
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    rows = [QUESTIONS[i % len(QUESTIONS)] for i in range(batch)]
    samples = {
        "image": images,
        "text_input": [q for q, _, _ in rows],
        "answer": [a for _, a, _ in rows],
        "question_id": [f"smoke-{i}" for i in range(len(rows))],
        "question_type": [t for _, _, t in rows],
        "style": [STYLE] * batch,
    }
    loss, step_s = training_step(model, samples, args.task_options)
    timings = style_term_timings(model, samples, args.task_options, args.rounds)
    image = images[:1]
    model.eval()
    generated, generate_s = timed(lambda: model.generate({"image": image, "text_input": [QUESTION]}))
    answers, answers_s = timed(lambda: model.predict_answers({"image": image, "text_input": [QUESTION]}))
    counts = parameter_counts(model)
    return {
        "model_type": args.model_type,
        "precision": model.opt_precision,  # what the frozen parts computed in
        "vit_precision": model.vit_precision,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "task_options": list(args.task_options),
        "style_terms": timings,
        "image_size": size,
        "opt_vocab_rows": model.opt_model.config.vocab_size,
        "tokenizer_tokens": len(model.opt_tokenizer),
        "build_s": round(build_s, 1),
        "step_s": round(step_s, 2),
        "loss": round(loss, 4),
        "generate_s": round(generate_s, 2),
        "generated": generated,
        "predict_answers_s": round(answers_s, 2),
        "answers": answers,
        "peak_rss_bytes": peak_rss_bytes(),
        "total_params": sum(c["total"] for c in counts.values()),
        "trainable_params": sum(c["trainable"] for c in counts.values()),
        "params": counts,
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    model_types = sorted(registry.get_model_class("blip2_opt_gated").PRETRAINED_MODEL_CONFIG_DICT)
    parser.add_argument("--model-type", default="pretrain_opt2.7b", choices=model_types)
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="precision of the frozen ViT and OPT: auto (default) is bf16 where the CPU computes it "
        "natively, fp32 otherwise; bf16 runs anyway, with a warning where it is emulated; fp16 is computed "
        "in fp32",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--no-memory-check",
        action="store_true",
        help="run even when the memory available is less than the run needs",
    )
    parser.add_argument("--batch-size", type=int, default=2, help="rows per training step (all labelled)")
    parser.add_argument(
        "--task-options",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="the task's loss settings over the demo's (e.g. style_probe_share=0.125 style_kl_teacher=probe)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds of the three timed steps (LM only, share, every row)"
    )
    return parser.parse_args(argv)


def report(result):
    """The figures, one per line, each timing and memory figure with the precision and CPU capability it
    was measured with; then all of it as one JSON line."""
    tag = f"[{result['precision']}, {result['cpu_capability']}]"
    settings = ("model_type", "cpu", "precision", "precision_reason", "threads", "batch_size", "task_options")
    for key in settings:
        print(f"{key}: {result[key]}")
    for key in ("build_s", "step_s", "style_terms", "generate_s", "predict_answers_s"):
        print(f"{key}: {result[key]}  {tag}")
    print(f"peak_rss: {result['peak_rss_bytes'] / GiB:.2f} GiB  {tag}")
    for key in ("loss", "generated", "answers", "total_params", "trainable_params"):
        print(f"{key}: {result[key]}")
    for part, count in result["params"].items():
        print(f"params {part}: {count['total']:,} total, {count['trainable']:,} trainable")
    print(json.dumps(result), flush=True)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    choice = cpu_precision(args.precision, "--precision")
    print(f"cpu: {choice.features.describe()}")
    print(f"precision: {choice.precision} ({choice.reason})")
    stated, enough = memory_check(args.model_type, choice.precision)
    print(f"memory: {stated}", flush=True)
    if not enough and not args.no_memory_check:
        print(refusal(stated, choice), file=sys.stderr)
        return 2
    # A random EfficientNet's activations shrink towards the denormal range at every squeeze-excitation gate,
    # where x86 arithmetic is many times slower; a trained CNN's do not (as in benchmarks/step_time.py).
    torch.set_flush_denormal(True)
    root = tempfile.mkdtemp(prefix="real_size_smoke-")
    try:
        result = run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result.update(
        precision_requested=args.precision,
        precision_reason=choice.reason,
        cpu=choice.features.describe(),
        cpu_capability=choice.features.capability,
        native_bf16=choice.features.native_bf16,
    )
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Real-size CPU smoke run: blip2_opt_gated `pretrain_opt2.7b` at its real size, random weights, offline.

    python benchmarks/real_size_smoke.py                        # pretrain_opt2.7b, frozen parts in bf16
    python benchmarks/real_size_smoke.py --precision fp32 --threads 2
    python benchmarks/real_size_smoke.py --model-type tiny      # the same run at toy size, in seconds
    python benchmarks/real_size_smoke.py --batch-size 8 --threads 2 --task-options style_probe_share=0.125

EVA ViT-g (39 x 1408), BERT-base Q-Former, OPT-2.7B and EfficientNet-B3 (300 px, random: allow_random) are
built from the type's YAML with every source a local stand-in (lavis_gated.offline.standins: the real
configs and a synthetic tokenizer as large as OPT's, 50265 tokens for 50272 embedding rows). Then: one
training step with the style_captioning task's loss (the demo's weights: lm 1, style_name 0.1, style_kl 0.1,
style_ce 1.0, the style probe on run.style_probe_share of the labelled rows; --task-options key=value ...
changes them), backward and an AdamW step, failing if a frozen parameter got a gradient or a trainable one
did not; then the style terms' cost, timed in this one process: --rounds rounds of three training steps, in
turn LM only (every style weight 0: no probe), the task's loss (the probe at its share), and the task's loss
with the probe on every labelled row; medians and their ratios to the LM-only step. The batch is
--batch-size rows of ArtQuest questions (artist, title, school, ...), each with a style label. Then one
generate and one predict_answers (beam search, LAVIS's defaults). Printed: build, step and generation times,
the style terms' timings, peak RSS (ru_maxrss) and parameter counts (total / trainable, per part), one per
line, then all of it as one JSON line. Peak RSS 9.6 GiB with bf16 at batch 1 (2 CPU cores are enough).

Frozen parts' precision (--precision, default bf16): the ViT and OPT are stored in bf16 and computed under
CPU bf16 autocast (lavis_gated/models/precision.py). In fp32 they hold 3.9 + 10.6 GB (building the model
alone peaked at 15.3 GiB RSS, a run at 15.8 GiB: most of a 24 GiB machine); bf16 halves them (2 + 5.3 GB),
and CPUs with AVX512-BF16 or AMX compute bf16 natively: on an AMD EPYC with AVX512-BF16, an OPT-2.7B-sized
matmul ran 5 to 7 times faster in bf16 than in fp32. fp16 would save nothing: fp16 parts are converted to
fp32 at first use on CPU.
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
from lavis_gated.offline.standins import random_model_config  # noqa: E402
from lavis_gated.tasks.losses import probe_rows  # noqa: E402

STYLE = "impressionism"
QUESTION = QUESTIONS[0][0]
LM_ONLY = ("style_name_weight=0", "style_kl_weight=0", "style_ce_weight=0")


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


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
    """{setting: median seconds of a training step} for LM only, the task's loss (the probe at its share)
    and the probe on every labelled row, run in turn for `rounds` rounds, and the ratios to LM only."""
    settings = {
        "lm_only": [*task_options, *LM_ONLY],
        "probe_default_share": list(task_options),
        "probe_every_labelled_row": [*task_options, "style_probe_share=1.0", "style_probe_max_rows=null"],
    }
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, weight_decay=0.05)
    times = {name: [] for name in settings}
    for _ in range(rounds):
        for name, options in settings.items():
            times[name].append(training_step(model, samples, options, optimizer, check=False)[1])
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        "step_s": {name: round(t, 2) for name, t in medians.items()},
        "ratio_to_lm_only": {name: round(t / medians["lm_only"], 3) for name, t in medians.items()},
        "probed_rows": {
            name: _probed(samples, options) for name, options in settings.items() if name != "lm_only"
        },
    }


def _probed(samples, options):
    """Rows the probe scores per step under the task settings `options` (every row is labelled)."""
    config = build_task(options).config
    rows = probe_rows([0] * len(samples["answer"]), config.style_probe_share, config.style_probe_max_rows)
    return sum(rows)


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def run(args, root):
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
        "precision": args.precision,
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    model_types = sorted(registry.get_model_class("blip2_opt_gated").PRETRAINED_MODEL_CONFIG_DICT)
    parser.add_argument("--model-type", default="pretrain_opt2.7b", choices=model_types)
    parser.add_argument(
        "--precision",
        choices=("bf16", "fp32", "fp16"),
        default="bf16",
        help="storage precision of the frozen ViT and OPT (fp16 is computed in fp32 on CPU)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
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
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # A random EfficientNet's activations shrink towards the denormal range at every squeeze-excitation gate,
    # where x86 arithmetic is many times slower; a trained CNN's do not (as in benchmarks/step_time.py).
    torch.set_flush_denormal(True)
    root = tempfile.mkdtemp(prefix="real_size_smoke-")
    try:
        result = run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for key in (
        "model_type",
        "precision",
        "threads",
        "batch_size",
        "task_options",
        "style_terms",
        "build_s",
        "step_s",
        "loss",
        "generate_s",
        "generated",
        "predict_answers_s",
        "answers",
        "total_params",
        "trainable_params",
    ):
        print(f"{key}: {result[key]}")
    print(f"peak_rss: {result['peak_rss_bytes'] / 2**30:.2f} GiB")
    for part, count in result["params"].items():
        print(f"params {part}: {count['total']:,} total, {count['trainable']:,} trainable")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Training-step cost of LAVIS's own Blip2OPT and of blip2_opt_gated at one size, measured side by side.

    python benchmarks/step_time.py --size mid --batch-size 8                  # CPU
    python benchmarks/step_time.py --size full --device cuda --amp fp16 --batch-size 32 \
        --fast --compile reduce-overhead
    python benchmarks/step_time.py --size mid --batch-size 8 --epochs 4       # frozen-feature cache, epochs

Sizes (lavis_gated.offline.standins.SIZES; random weights, nothing downloaded): `tiny` (the tiny model type),
`mid` (CPU-sized: a ViT-S-like EVA, a 6-layer Q-Former, a 6-layer OPT), `full` (EVA ViT-g 39x1408, BERT-base
Q-Former, OPT-2.7B; GPU only) and `full_opt6.7b` (the same with OPT-6.7B; GPU only).
The baseline is LAVIS's Blip2OPT class itself; its weights are loaded into blip2_opt_gated, so both compute
the same BLIP-2. The gated step is the style_captioning task's full loss (LM + style terms).

Steps run alternately (baseline, gated[, gated fast]) in one process after warm-up, so that machine noise hits
every model alike; the ratio to the baseline is taken per round and reported as median and quartiles. `--fast`
adds the gated model fed with precomputed frozen features (the batches run.frozen_feature_cache gives),
`--compile MODE ...` that path with its trainable part compiled (model.compile_mode). Images (and, for the
fast path, features) are already on the device, as with a prefetching loader.

Output: one JSON line per model: median ms/step and quartiles, samples/s, peak memory (CUDA max allocated
during a step less what the other models hold; on CPU the peak RSS of a separate process that builds only that
model, less its RSS after the imports), trainable and total parameters, the share of step time in the frozen
ViT, the style CNN and the OPT (forward, and backward through it), and for the gated models the ratios to the
baseline. `--epochs N` instead times N epochs over synthetic ArtQuest data without and with the frozen-feature
cache (the cached run's first epoch includes building the cache) and compares their losses step by step.
"""

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from benchmark_models import (
    AMP,
    build_baseline,
    build_gated,
    build_task,
    build_trainers,
    fast_trainer,
    make_samples,
    precision_for,
)
from step_timing import (
    Trainer,
    compile_counters,
    cuda_peak_memory,
    device_name,
    parameter_counts,
    part_shares,
    quartiles,
    rss_bytes,
    synchronize,
)

import lavis_gated  # noqa: F401  (registration)
from lavis_gated.offline.standins import SIZES, TOY_SIZES, write_sources


def peak_memory(args, trainer, trainers):
    """{"peak_memory_bytes", "memory": what it is[, "peak_rss_bytes"]} of one model's training step."""
    if trainer.device.type == "cuda":
        trainer.timed_step(record=False)  # optimizer state exists from the first step on
        return {
            "peak_memory_bytes": cuda_peak_memory(trainer, [t for t in trainers if t is not trainer]),
            "memory": "cuda max allocated during a step, less the other models' resident tensors",
        }
    rss = cpu_peak_rss(args, trainer.name)
    return {
        "peak_memory_bytes": rss["above_start_bytes"],
        "peak_rss_bytes": rss["peak_rss_bytes"],
        "memory": "peak RSS of a process holding only this model, less its RSS after the imports",
    }


def cpu_peak_rss(args, which):
    """{"peak_rss_bytes", "above_start_bytes"} of a fresh process that builds only `which` and trains a few
    steps."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--size",
        args.size,
        "--batch-size",
        str(args.batch_size),
        "--image-size",
        str(args.image_size),
        "--device",
        "cpu",
        "--memory-probe",
        which,
    ]
    command += ["--gated-options", *args.gated_options] if args.gated_options else []
    command += ["--task-options", *args.task_options] if args.task_options else []
    command += ["--threads", str(args.threads)] if args.threads else []
    out = subprocess.run(
        command, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore")
    )
    if out.returncode != 0:
        raise RuntimeError(
            f"memory probe of {which} failed (exit {out.returncode}): {' '.join(command)}\n"
            + "\n".join(out.stderr.strip().splitlines()[-15:])
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- the runs -------------------------------------------------------------------------------------


def memory_probe(args, root, device):
    """Build one model alone, train a few steps, print its peak RSS (a child process of a CPU run): the
    peak since the imports (the high-water mark is reset there) and that peak less the RSS at that point."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # resets VmHWM: the imports' transient peak is not the model's
    start = rss_bytes("VmRSS")
    sources = write_sources(args.size, root)
    baseline_samples, gated_samples = make_samples(args.batch_size, args.image_size, device)
    if args.memory_probe == "blip2_opt":
        trainer = Trainer(
            "blip2_opt",
            build_baseline(args.size, sources, args.image_size, device),
            lambda m, s: m(s)["loss"],
            baseline_samples,
            device,
            None,
        )
    else:
        gated = build_gated(args.size, sources, args.image_size, device, args.gated_options)
        task = build_task(args.task_options)
        if args.memory_probe.startswith("blip2_opt_gated_fast"):
            mode = args.memory_probe.partition("_compiled_")[2] or None
            trainer = fast_trainer(gated, gated_samples, task, device, None, mode, copy_model=False)
        else:
            trainer = Trainer(
                "blip2_opt_gated", gated, lambda m, s: task.train_step(m, s), gated_samples, device, None
            )
    for _ in range(3):
        trainer.step()
    peak = rss_bytes("VmHWM")
    print(json.dumps({"peak_rss_bytes": peak, "above_start_bytes": peak - start}))


def step_benchmark(args, root, device):
    trainers = build_trainers(args, root, device)
    common = {
        "size": args.size,
        "device": device.type,
        "device_name": device_name(device),
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "amp": args.amp,
        "torch": torch.__version__,
        # the frozen ViT/OPT run in their storage precision whatever --amp says (LAVIS: fp16 on CUDA)
        "frozen_precision": precision_for(device),
    }
    # Before each model's first training step (same weights), and memory before anything is compiled: a
    # compiled model's CUDA-graph pool would otherwise count in the others' peaks.
    eval_losses, memory = {}, {}
    for trainer in [t for t in trainers if "_compiled_" not in t.name]:
        eval_losses[trainer.name] = None if trainer is trainers[0] else trainer.eval_loss()
        memory[trainer.name] = peak_memory(args, trainer, trainers)
    for trainer in [t for t in trainers if "_compiled_" in t.name]:
        try:  # compiles (eval, then training graphs): a failure costs this model's line, not the others'
            eval_losses[trainer.name] = trainer.eval_loss()
            memory[trainer.name] = peak_memory(args, trainer, trainers)
        except Exception as err:  # noqa: BLE001  (Triton/Inductor errors have no common base class)
            print(
                json.dumps({"model": trainer.name, **common, "error": f"{type(err).__name__}: {err}"[:2000]}),
                flush=True,
            )
            trainers.remove(trainer)
    for _ in range(args.warmup):
        for trainer in trainers:
            trainer.timed_step(record=False)
    for _ in range(args.rounds):
        for trainer in trainers:
            trainer.timed_step()
    baseline = trainers[0]
    lines = []
    for trainer in trainers:
        p25, median, p75 = quartiles(trainer.times)
        trainable, total = parameter_counts(trainer.model)
        line = {
            "model": trainer.name,
            **common,
            "ms_per_step": round(median * 1000, 2),
            "ms_per_step_quartiles": [round(p25 * 1000, 2), round(p75 * 1000, 2)],
            "samples_per_s": round(args.batch_size / median, 2),
            "steps": len(trainer.times),
            "trainable_params": trainable,
            "total_params": total,
            "shares": part_shares(trainer, args.share_steps),
            "loss_first_last": [round(trainer.losses[0], 5), round(trainer.losses[-1], 5)],
        }
        line.update(memory[trainer.name])
        if trainer.scaler:
            line.update(skipped_steps=trainer.skipped_steps, grad_scale=trainer.scaler.get_scale())
        if hasattr(trainer.model, "pad_multiple"):
            line["text_pad_multiple"] = trainer.model.pad_multiple
            line["task_options"] = list(args.task_options)
        if "_compiled_" in trainer.name:
            line["compile_counters"] = compile_counters()
        if trainer is not baseline:
            ratios = [t / b for t, b in zip(trainer.times, baseline.times)]
            r25, r50, r75 = quartiles(ratios)
            line["ratio_to_baseline"] = {
                "step_time_median": round(r50, 4),
                "step_time_quartiles": [round(r25, 4), round(r75, 4)],
                "peak_memory": None,
            }
        if trainer.name.startswith("blip2_opt_gated_fast"):
            line["eval_loss_abs_diff_vs_plain"] = abs(
                eval_losses[trainer.name] - eval_losses["blip2_opt_gated"]
            )
        lines.append(line)
    for line in lines[1:]:
        line["ratio_to_baseline"]["peak_memory"] = round(
            line["peak_memory_bytes"] / lines[0]["peak_memory_bytes"], 4
        )
    for line in lines:
        print(json.dumps(line), flush=True)


def epoch_benchmark(args, root, device):
    """Epochs over synthetic ArtQuest data, alternately without and with the frozen-feature cache."""
    from lavis.processors.blip_processors import BlipImageEvalProcessor, BlipQuestionProcessor

    from lavis_gated.datasets.artquest_dataset import ArtQuestDataset, ImageCheck, read_split
    from lavis_gated.datasets.feature_cache import attach_feature_cache
    from lavis_gated.datasets.synthetic_artquest import generate

    sources = write_sources(args.size, root)
    generate(os.path.join(root, "data"), {"train": args.images_per_style}, seed=0)
    images = os.path.join(root, "data", "images")
    records, _ = read_split(
        os.path.join(root, "data", "artquest_train.csv"), split="train", images=ImageCheck(images)
    )
    dataset = ArtQuestDataset(
        BlipImageEvalProcessor(image_size=args.image_size), BlipQuestionProcessor(), images, records
    )
    gated = build_gated(args.size, sources, args.image_size, device, args.gated_options)
    task = build_task(args.task_options)
    runs = {"uncached": {"model": gated, "dataset": dataset}, "cached": {"model": copy.deepcopy(gated)}}
    for run in runs.values():
        run.update(
            optimizer=torch.optim.AdamW([p for p in run["model"].parameters() if p.requires_grad], lr=1e-4),
            times=[],
            losses=[],
        )
        run["model"].train()
    for epoch in range(args.epochs):
        for run in runs.values():
            start = time.perf_counter()
            if "dataset" not in run:  # the first cached epoch builds the cache
                run["dataset"] = attach_feature_cache(
                    {"artquest": {"train": dataset}},
                    run["model"],
                    os.path.join(root, "cache"),
                    device,
                    batch_size=args.batch_size,
                )["artquest"]["train"]
            loader = torch.utils.data.DataLoader(
                run["dataset"],
                batch_size=args.batch_size,
                shuffle=True,
                drop_last=True,
                collate_fn=run["dataset"].collater,
                generator=torch.Generator().manual_seed(epoch),
            )
            for step, samples in enumerate(loader):
                torch.manual_seed(1000 * epoch + step)  # the same dropout masks on both paths
                samples = {k: v.to(device) if torch.is_tensor(v) else v for k, v in samples.items()}
                loss = task.train_step(run["model"], samples)
                loss.backward()
                run["optimizer"].step()
                run["optimizer"].zero_grad(set_to_none=True)
                run["losses"].append(loss.item())
            synchronize(device)
            run["times"].append(time.perf_counter() - start)
    later = {name: statistics.median(run["times"][1:]) for name, run in runs.items()}
    print(
        json.dumps(
            {
                "mode": "epochs",
                "size": args.size,
                "device": device.type,
                "device_name": device_name(device),
                "batch_size": args.batch_size,
                "image_size": args.image_size,
                "images": len({r["image"] for r in dataset.annotation}),
                "samples_per_epoch": len(dataset),
                "epoch_s": {name: [round(t, 2) for t in run["times"]] for name, run in runs.items()},
                "speedup_after_first_epoch": round(later["uncached"] / later["cached"], 3),
                "max_abs_loss_diff_same_weights": same_weights_loss_diff(
                    runs["cached"]["model"], task, dataset, runs["cached"]["dataset"], args.batch_size, device
                ),
                "max_abs_loss_diff_training_runs": max(
                    abs(a - b) for a, b in zip(runs["uncached"]["losses"], runs["cached"]["losses"])
                ),
                "steps": len(runs["cached"]["losses"]),
            }
        ),
        flush=True,
    )


@torch.no_grad()
def same_weights_loss_diff(model, task, dataset, cached_dataset, batch_size, device):
    """Largest |loss(image batch) - loss(cached-feature batch)| over one epoch, one model, the same dropout
    masks.

    Two training runs drift apart from any difference at all (AdamW turns a near-zero gradient's sign into a
    full step), and on CPU the CNN's result for an image varies in its last bits with the other images of its
    batch; with the weights shared, what is left is what the cache changes in the loss itself."""
    worst = 0.0
    loaders = [
        torch.utils.data.DataLoader(d, batch_size=batch_size, collate_fn=d.collater)
        for d in (dataset, cached_dataset)
    ]
    for step, batches in enumerate(zip(*loaders)):
        losses = []
        for samples in batches:
            torch.manual_seed(step)
            losses.append(
                task.train_step(
                    model, {k: v.to(device) if torch.is_tensor(v) else v for k, v in samples.items()}
                ).item()
            )
        worst = max(worst, abs(losses[0] - losses[1]))
    return worst


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="mid")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, help="default: the size's (224; tiny 64)")
    parser.add_argument("--amp", choices=sorted(AMP), default="none", help="autocast dtype on CUDA")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument(
        "--rounds", type=int, default=10, help="timed rounds (one step of each model per round)"
    )
    parser.add_argument("--share-steps", type=int, default=2, help="instrumented steps for the part shares")
    parser.add_argument("--fast", action="store_true", help="also the gated model on cached frozen features")
    parser.add_argument(
        "--compile",
        nargs="*",
        default=[],
        help="with --fast: also the fast path compiled in these torch.compile modes "
        "(default, reduce-overhead, ...)",
    )
    parser.add_argument("--gated-options", nargs="*", default=[], help="model config overrides, key=value")
    parser.add_argument(
        "--task-options",
        nargs="*",
        default=[],
        help="loss settings, key=value (e.g. style_kl_weight=0)",
    )
    parser.add_argument(
        "--epochs", type=int, default=0, help="instead: time epochs with and without the cache"
    )
    parser.add_argument(
        "--images-per-style", type=int, default=8, help="with --epochs: synthetic images per style"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.image_size = args.image_size or SIZES[args.size]["image_size"]
    if args.size not in TOY_SIZES and not args.device.startswith("cuda"):
        parser.error(f"--size {args.size} needs a GPU (--device cuda)")
    if args.amp != "none" and not args.device.startswith("cuda"):
        parser.error("--amp needs --device cuda (LAVIS's blip2_opt autocasts on CUDA only)")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # A random EfficientNet's activations shrink at every squeeze-excitation gate towards the denormal range,
    # where x86 arithmetic is many times slower: flushing denormals times what a trained CNN costs (all
    # models).
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    root = tempfile.mkdtemp(prefix="step_time-")
    try:
        if args.memory_probe:
            memory_probe(args, root, device)
        elif args.epochs:
            epoch_benchmark(args, root, device)
        else:
            step_benchmark(args, root, device)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Training-step cost of LAVIS's own Blip2OPT and of blip2_opt_gated, built at one size, measured side by side.

    python benchmarks/step_time.py --size mid --batch-size 8                      # CPU
    python benchmarks/step_time.py --size full --device cuda --amp fp16 --batch-size 32 --fast --compile reduce-overhead
    python benchmarks/step_time.py --size mid --batch-size 8 --epochs 4           # frozen-feature cache, epochs

Sizes (lavis_gated.offline_standins.SIZES; random weights, nothing downloaded): `tiny` (the tiny model type),
`mid` (CPU-sized: a ViT-S-like EVA, a 6-layer Q-Former, a 6-layer OPT), `full` (EVA ViT-g 39x1408, BERT-base
Q-Former, OPT-2.7B; GPU only) and `full_opt6.7b` (the same with OPT-6.7B; GPU only).
The baseline is LAVIS's Blip2OPT class itself; its weights are loaded into blip2_opt_gated, so both compute
the same BLIP-2. The gated step is the style_captioning task's full loss (LM + style terms).

Steps run alternately (baseline, gated[, gated fast]) in one process after warm-up, so that machine noise
hits every model alike; the ratio to the baseline is taken per round and reported as median and quartiles.
`--fast` adds the gated model fed with precomputed frozen features (the batches run.frozen_feature_cache gives),
`--compile MODE ...` that path with its trainable part compiled (model.compile_mode). Images (and, for the fast
path, features) are already on the device, as with a prefetching loader.

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
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from omegaconf import OmegaConf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import lavis_gated  # noqa: E402,F401  (registration)
from lavis.common.registry import registry  # noqa: E402
from lavis_gated.offline_standins import SIZES, TOY_SIZES, build_lavis_blip2opt, write_sources  # noqa: E402
from lavis_gated.tasks.style_captioning import StyleCaptioningTask  # noqa: E402

AMP = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}
PROMPT = "Question: {} Answer:"
QUESTIONS = [("what style is this painting?", "post impressionism", "style"),
             ("which shape is in the middle of the painting?", "a small red circle", "shape")]
STYLE = "impressionism"


# ---- building the models -------------------------------------------------------------------------

def precision_for(device):
    """Frozen ViT/OPT storage precision: LAVIS's fp16 on CUDA; fp32 on CPU (as load_model_and_preprocess)."""
    return "fp16" if device.type == "cuda" else "fp32"


def build_baseline(size, sources, image_size, device):
    """LAVIS's Blip2OPT at `size`, random weights, on `device`."""
    spec = SIZES[size]
    with torch.device(device):
        model = build_lavis_blip2opt(sources, spec["vit"], seed=0, img_size=image_size,
                                     vit_precision=precision_for(device),
                                     num_query_token=spec["num_query_token"], prompt="", max_txt_len=32)
    return model.float() if device.type == "cpu" else model


def gated_config(size, sources, image_size, device, overrides=()):
    """blip2_opt_gated's model config for `size`: the model type's YAML, every part random and local."""
    spec = SIZES[size]
    model_cls = registry.get_model_class("blip2_opt_gated")
    cfg = OmegaConf.load(model_cls.default_config_path(spec["model_type"])).model
    cfg = OmegaConf.merge(cfg, {
        "vit_model": spec["vit"], "vit_weights": None, "image_size": image_size, "pretrained": None,
        "vit_precision": precision_for(device), "opt_precision": precision_for(device),
        "num_query_token": spec["num_query_token"], "qformer_bert": sources["bert"], "qformer_random_init": True,
        "opt_model": sources["opt"], "opt_random_init": True, "prompt": PROMPT,
        "style_encoder": {**spec["style_encoder"], "checkpoint": None, "class_names": None, "allow_random": True},
    })
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))


def build_gated(size, sources, image_size, device, overrides=()):
    with torch.device(device):
        model = registry.get_model_class("blip2_opt_gated").from_config(gated_config(size, sources, image_size, device, overrides))
    return model.to(device)


def build_task():
    """The demo's loss: LM + 0.1 style hit + 0.1 style KL + 1.0 style-head CE on style questions."""
    return StyleCaptioningTask(lm_weight=1.0, style_hit_weight=0.1, style_kl_weight=0.1, style_ce_weight=1.0,
                               style_question_types=["style"])


def make_samples(batch_size, image_size, device):
    """(baseline samples, gated samples) over the same images and texts."""
    image = torch.randn(batch_size, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)).to(device)
    rows = [QUESTIONS[i % len(QUESTIONS)] for i in range(batch_size)]
    baseline = {"image": image, "text_input": [f"{PROMPT.format(q)} {a}" for q, a, _ in rows]}
    gated = {"image": image, "text_input": [q for q, _, _ in rows], "answer": [a for _, a, _ in rows],
             "question_type": [t for _, _, t in rows], "style": [STYLE] * batch_size}
    return baseline, gated


# ---- measuring ------------------------------------------------------------------------------------

class Trainer:
    """One model's training step: autocast, loss, backward, (GradScaler,) AdamW, zero_grad."""

    def __init__(self, name, model, loss_fn, samples, device, amp_dtype):
        self.name, self.model, self.loss_fn, self.samples, self.device = name, model, loss_fn, samples, device
        self.amp_dtype = amp_dtype
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.05)
        self.scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        self.times, self.losses = [], []
        self.skipped_steps = 0  # fp16 steps the GradScaler skipped (an inf/NaN gradient): no AdamW, so faster
        model.train()

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)

    def step(self):
        with self.autocast():
            loss = self.loss_fn(self.model, self.samples)
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def timed_step(self, record=True):
        scale = self.scaler.get_scale() if self.scaler else None
        synchronize(self.device)
        start = time.perf_counter()
        loss = self.step()
        synchronize(self.device)
        elapsed = time.perf_counter() - start
        if record:
            self.times.append(elapsed)
            self.losses.append(loss.item())
            self.skipped_steps += bool(self.scaler and self.scaler.get_scale() < scale)  # update() lowers it on a skip
        return elapsed

    @torch.no_grad()
    def eval_loss(self):
        """The loss in eval mode (no dropout): the same function of the weights for every path."""
        self.model.eval()
        try:
            with self.autocast():
                return self.loss_fn(self.model, self.samples).item()
        finally:
            self.model.train()

    def resident_storages(self):
        """{storage pointer: bytes} of what this model keeps on its device between steps."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        tensors += [t for state in self.optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
        tensors += [t for t in self.samples.values() if torch.is_tensor(t)]
        return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors if t.device.type == "cuda"}


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PartTimer:
    """Time spent inside named submodules during steps: forward, plus backward through them where gradients
    flow (from the grad of their output to the grad of their input). CUDA events on GPU, clock on CPU."""

    def __init__(self, parts, device):
        """parts: {name: [modules]} (modules of one part must not call each other)."""
        self.cuda = device.type == "cuda"
        self.marks = {name: [] for name in parts}
        self.handles = []
        for name, modules in parts.items():
            for module in modules:
                self.handles.append(module.register_forward_pre_hook(self._pre(name), with_kwargs=True))
                self.handles.append(module.register_forward_hook(self._post(name)))

    def _mark(self, name):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks[name].append(event)
        else:
            self.marks[name].append(time.perf_counter())

    def _pre(self, name):
        def hook(module, args, kwargs):
            self._mark(name)
            inputs = [t for t in (*args, *kwargs.values()) if torch.is_tensor(t) and t.requires_grad]
            if inputs:  # backward through the part ends with the grad of its input
                inputs[0].register_hook(lambda grad: self._mark(name))
        return hook

    def _post(self, name):
        def hook(module, args, output):
            self._mark(name)
            values = output.values() if isinstance(output, dict) else output if isinstance(output, tuple) else [output]
            outputs = [t for t in values if torch.is_tensor(t) and t.requires_grad]
            if outputs:  # ... and starts with the grad of its (first) output
                outputs[0].register_hook(lambda grad: self._mark(name))
        return hook

    def seconds(self):
        """{part: seconds summed over (start, end) mark pairs}; call after synchronising."""
        total = {}
        for name, marks in self.marks.items():
            pairs = zip(marks[0::2], marks[1::2])
            if self.cuda:
                total[name] = sum(a.elapsed_time(b) for a, b in pairs) / 1000
            else:
                total[name] = sum(b - a for a, b in pairs)
        return total

    def remove(self):
        for handle in self.handles:
            handle.remove()


def part_shares(trainer, steps):
    """Share of step time in the frozen ViT, the style CNN and the OPT, over `steps` instrumented steps."""
    model = trainer.model
    # the decoder and the vocabulary projection: blip2_opt_gated calls them separately
    parts = {"vit": [model.visual_encoder], "opt": [model.opt_model.model.decoder, model.opt_model.lm_head]}
    if hasattr(model, "style_encoder"):
        parts["style_cnn"] = [model.style_encoder]
    timer = PartTimer(parts, trainer.device)
    try:
        total = sum(trainer.timed_step(record=False) for _ in range(steps))
        synchronize(trainer.device)
        return {name: round(seconds / total, 4) for name, seconds in timer.seconds().items()}
    finally:
        timer.remove()


def cuda_peak_memory(trainer, others):
    """CUDA max allocated during one step, less what the other models hold (they stay resident)."""
    mine = trainer.resident_storages()
    held = {ptr: n for other in others for ptr, n in other.resident_storages().items() if ptr not in mine}
    synchronize(trainer.device)
    torch.cuda.reset_peak_memory_stats(trainer.device)
    trainer.timed_step(record=False)
    return torch.cuda.max_memory_allocated(trainer.device) - sum(held.values())


def peak_memory(args, trainer, trainers):
    """{"peak_memory_bytes", "memory": what it is[, "peak_rss_bytes"]} of one model's training step."""
    if trainer.device.type == "cuda":
        trainer.timed_step(record=False)  # optimizer state exists from the first step on
        return {"peak_memory_bytes": cuda_peak_memory(trainer, [t for t in trainers if t is not trainer]),
                "memory": "cuda max allocated during a step, less the other models' resident tensors"}
    rss = cpu_peak_rss(args, trainer.name)
    return {"peak_memory_bytes": rss["above_start_bytes"], "peak_rss_bytes": rss["peak_rss_bytes"],
            "memory": "peak RSS of a process holding only this model, less its RSS after the imports"}


def cpu_peak_rss(args, which):
    """{"peak_rss_bytes", "above_start_bytes"} of a fresh process that builds only `which` and trains a few steps."""
    command = [sys.executable, os.path.abspath(__file__), "--size", args.size, "--batch-size", str(args.batch_size),
               "--image-size", str(args.image_size), "--device", "cpu", "--memory-probe", which]
    command += ["--gated-options", *args.gated_options] if args.gated_options else []
    command += ["--threads", str(args.threads)] if args.threads else []
    out = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if out.returncode != 0:
        raise RuntimeError(f"memory probe of {which} failed (exit {out.returncode}): {' '.join(command)}\n"
                           + "\n".join(out.stderr.strip().splitlines()[-15:]))
    return json.loads(out.stdout.strip().splitlines()[-1])


def compile_counters():
    """torch.compile's own counts for this process: distinct graphs, graph breaks, CUDA-graph skips (each skip
    means `reduce-overhead` ran that graph without CUDA graphs)."""
    from torch._dynamo.utils import counters

    return {"unique_graphs": counters["stats"]["unique_graphs"], "graph_breaks": sum(counters["graph_break"].values()),
            "cudagraph_skips": counters["inductor"]["cudagraph_skips"]}


def parameter_counts(model):
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def quartiles(values):
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], statistics.median(values), q[2]


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


# ---- the runs -------------------------------------------------------------------------------------

def fast_trainer(gated, gated_samples, task, device, amp_dtype, compile_mode=None, copy_model=True):
    """The gated model (a copy) fed precomputed frozen features (the frozen-feature cache's batches),
    optionally with its trainable path compiled (model.compile_mode)."""
    model = copy.deepcopy(gated) if copy_model else gated
    with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        features = model.frozen_features(gated_samples["image"])
    samples = {k: v for k, v in gated_samples.items() if k != "image"}
    samples.update(features)
    name = "blip2_opt_gated_fast"
    if compile_mode:
        model.compile_trainable_path(mode=compile_mode)
        name += f"_compiled_{compile_mode}"
    return Trainer(name, model, lambda m, s: task.train_step(m, s), samples, device, amp_dtype)


def build_trainers(args, root, device):
    sources = write_sources(args.size, root)
    baseline_samples, gated_samples = make_samples(args.batch_size, args.image_size, device)
    amp_dtype = AMP[args.amp]
    task = build_task()
    baseline = build_baseline(args.size, sources, args.image_size, device)
    gated = build_gated(args.size, sources, args.image_size, device, args.gated_options)
    gated.load_trained_state(baseline.state_dict(), "LAVIS Blip2OPT")
    trainers = [Trainer("blip2_opt", baseline, lambda m, s: m(s)["loss"], baseline_samples, device, amp_dtype),
                Trainer("blip2_opt_gated", gated, lambda m, s: task.train_step(m, s), gated_samples, device, amp_dtype)]
    if args.fast:
        trainers += [fast_trainer(gated, gated_samples, task, device, amp_dtype, mode) for mode in [None, *args.compile]]
    return trainers


def rss_bytes(field):
    """VmRSS (now) or VmHWM (peak) of this process, from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def memory_probe(args, root, device):
    """Build one model alone, train a few steps, print its peak RSS (a child process of a CPU run): the
    peak since the imports (the high-water mark is reset there) and that peak less the RSS at that point."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # resets VmHWM: the imports' transient peak is not the model's
    start = rss_bytes("VmRSS")
    sources = write_sources(args.size, root)
    baseline_samples, gated_samples = make_samples(args.batch_size, args.image_size, device)
    if args.memory_probe == "blip2_opt":
        trainer = Trainer("blip2_opt", build_baseline(args.size, sources, args.image_size, device),
                          lambda m, s: m(s)["loss"], baseline_samples, device, None)
    else:
        gated = build_gated(args.size, sources, args.image_size, device, args.gated_options)
        task = build_task()
        if args.memory_probe.startswith("blip2_opt_gated_fast"):
            mode = args.memory_probe.partition("_compiled_")[2] or None
            trainer = fast_trainer(gated, gated_samples, task, device, None, mode, copy_model=False)
        else:
            trainer = Trainer("blip2_opt_gated", gated, lambda m, s: task.train_step(m, s), gated_samples, device, None)
    for _ in range(3):
        trainer.step()
    peak = rss_bytes("VmHWM")
    print(json.dumps({"peak_rss_bytes": peak, "above_start_bytes": peak - start}))


def step_benchmark(args, root, device):
    trainers = build_trainers(args, root, device)
    common = {"size": args.size, "device": device.type, "device_name": device_name(device), "batch_size": args.batch_size,
              "image_size": args.image_size, "amp": args.amp, "torch": torch.__version__,
              # the frozen ViT/OPT run in their storage precision whatever --amp says (LAVIS: fp16 on CUDA)
              "frozen_precision": precision_for(device)}
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
            print(json.dumps({"model": trainer.name, **common, "error": f"{type(err).__name__}: {err}"[:2000]}), flush=True)
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
        line = {"model": trainer.name, **common, "ms_per_step": round(median * 1000, 2),
                "ms_per_step_quartiles": [round(p25 * 1000, 2), round(p75 * 1000, 2)],
                "samples_per_s": round(args.batch_size / median, 2), "steps": len(trainer.times),
                "trainable_params": trainable, "total_params": total,
                "shares": part_shares(trainer, args.share_steps),
                "loss_first_last": [round(trainer.losses[0], 5), round(trainer.losses[-1], 5)]}
        line.update(memory[trainer.name])
        if trainer.scaler:
            line.update(skipped_steps=trainer.skipped_steps, grad_scale=trainer.scaler.get_scale())
        if hasattr(trainer.model, "pad_multiple"):
            line["text_pad_multiple"] = trainer.model.pad_multiple
        if "_compiled_" in trainer.name:
            line["compile_counters"] = compile_counters()
        if trainer is not baseline:
            ratios = [t / b for t, b in zip(trainer.times, baseline.times)]
            r25, r50, r75 = quartiles(ratios)
            line["ratio_to_baseline"] = {"step_time_median": round(r50, 4), "step_time_quartiles": [round(r25, 4), round(r75, 4)],
                                         "peak_memory": None}
        if trainer.name.startswith("blip2_opt_gated_fast"):
            line["eval_loss_abs_diff_vs_plain"] = abs(eval_losses[trainer.name] - eval_losses["blip2_opt_gated"])
        lines.append(line)
    for line in lines[1:]:
        line["ratio_to_baseline"]["peak_memory"] = round(line["peak_memory_bytes"] / lines[0]["peak_memory_bytes"], 4)
    for line in lines:
        print(json.dumps(line), flush=True)


def epoch_benchmark(args, root, device):
    """Epochs over synthetic ArtQuest data, alternately without and with the frozen-feature cache."""
    from lavis.processors.blip_processors import BlipImageEvalProcessor, BlipQuestionProcessor

    from lavis_gated.datasets.artquest_dataset import ArtQuestDataset, attach_images, read_split
    from lavis_gated.datasets.feature_cache import attach_feature_cache
    from lavis_gated.datasets.synthetic_artquest import generate

    sources = write_sources(args.size, root)
    generate(os.path.join(root, "data"), {"train": args.images_per_style}, seed=0)
    images = os.path.join(root, "data", "images")
    records, _ = read_split(os.path.join(root, "data", "artquest_train.csv"), split="train")
    records, _ = attach_images(records, images, "train")
    dataset = ArtQuestDataset(BlipImageEvalProcessor(image_size=args.image_size), BlipQuestionProcessor(), images, records)
    gated = build_gated(args.size, sources, args.image_size, device, args.gated_options)
    task = build_task()
    runs = {"uncached": {"model": gated, "dataset": dataset}, "cached": {"model": copy.deepcopy(gated)}}
    for run in runs.values():
        run.update(optimizer=torch.optim.AdamW([p for p in run["model"].parameters() if p.requires_grad], lr=1e-4),
                   times=[], losses=[])
        run["model"].train()
    for epoch in range(args.epochs):
        for name, run in runs.items():
            start = time.perf_counter()
            if "dataset" not in run:  # the first cached epoch builds the cache
                run["dataset"] = attach_feature_cache({"artquest": {"train": dataset}}, run["model"], os.path.join(root, "cache"),
                                                      device, batch_size=args.batch_size)["artquest"]["train"]
            loader = torch.utils.data.DataLoader(run["dataset"], batch_size=args.batch_size, shuffle=True, drop_last=True,
                                                 collate_fn=run["dataset"].collater,
                                                 generator=torch.Generator().manual_seed(epoch))
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
    print(json.dumps({
        "mode": "epochs", "size": args.size, "device": device.type, "device_name": device_name(device),
        "batch_size": args.batch_size, "image_size": args.image_size, "images": len({r["image"] for r in dataset.annotation}),
        "samples_per_epoch": len(dataset), "epoch_s": {name: [round(t, 2) for t in run["times"]] for name, run in runs.items()},
        "speedup_after_first_epoch": round(later["uncached"] / later["cached"], 3),
        "max_abs_loss_diff_same_weights": same_weights_loss_diff(runs["cached"]["model"], task, dataset, runs["cached"]["dataset"],
                                                                 args.batch_size, device),
        "max_abs_loss_diff_training_runs": max(abs(a - b) for a, b in zip(runs["uncached"]["losses"], runs["cached"]["losses"])),
        "steps": len(runs["cached"]["losses"]),
    }), flush=True)


@torch.no_grad()
def same_weights_loss_diff(model, task, dataset, cached_dataset, batch_size, device):
    """Largest |loss(image batch) - loss(cached-feature batch)| over one epoch, one model, the same dropout masks.

    Two training runs drift apart from any difference at all (AdamW turns a near-zero gradient's sign into a
    full step), and on CPU the CNN's result for an image varies in its last bits with the other images of its
    batch; with the weights shared, what is left is what the cache changes in the loss itself."""
    worst = 0.0
    loaders = [torch.utils.data.DataLoader(d, batch_size=batch_size, collate_fn=d.collater) for d in (dataset, cached_dataset)]
    for step, batches in enumerate(zip(*loaders)):
        losses = []
        for samples in batches:
            torch.manual_seed(step)
            losses.append(task.train_step(model, {k: v.to(device) if torch.is_tensor(v) else v for k, v in samples.items()}).item())
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
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds (one step of each model per round)")
    parser.add_argument("--share-steps", type=int, default=2, help="instrumented steps for the part shares")
    parser.add_argument("--fast", action="store_true", help="also the gated model on cached frozen features")
    parser.add_argument("--compile", nargs="*", default=[],
                        help="with --fast: also the fast path compiled in these torch.compile modes (default, reduce-overhead, ...)")
    parser.add_argument("--gated-options", nargs="*", default=[], help="model config overrides, key=value")
    parser.add_argument("--epochs", type=int, default=0, help="instead: time epochs with and without the cache")
    parser.add_argument("--images-per-style", type=int, default=8, help="with --epochs: synthetic images per style")
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
    # where x86 arithmetic is many times slower: flushing denormals times what a trained CNN costs (all models).
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

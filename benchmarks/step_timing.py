"""Measuring training steps: a Trainer per model (autocast, loss, backward, GradScaler, AdamW), the share of a
step spent in named parts (frozen ViT, style CNN, OPT), peak memory, and small helpers the report uses.
"""

import statistics
import time

import torch

from lavis_gated.models.precision import cpu_features


class Trainer:
    """One model's training step: autocast, loss, backward, (GradScaler,) AdamW, zero_grad."""

    def __init__(self, name, model, loss_fn, samples, device, amp_dtype):
        self.name, self.model, self.loss_fn, self.samples, self.device = name, model, loss_fn, samples, device
        self.amp_dtype = amp_dtype
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.05
        )
        self.scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        self.times, self.losses = [], []
        self.skipped_steps = 0  # fp16 steps the GradScaler skipped (an inf/NaN gradient): no AdamW, so faster
        model.train()

    def autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        )

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
            self.skipped_steps += bool(
                self.scaler and self.scaler.get_scale() < scale
            )  # update() lowers it on a skip
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
        tensors += [
            t for state in self.optimizer.state.values() for t in state.values() if torch.is_tensor(t)
        ]
        tensors += [t for t in self.samples.values() if torch.is_tensor(t)]
        return {
            t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
            for t in tensors
            if t.device.type == "cuda"
        }


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
            values = (
                output.values()
                if isinstance(output, dict)
                else output
                if isinstance(output, tuple)
                else [output]
            )
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


def compile_counters():
    """torch.compile's own counts for this process: distinct graphs, graph breaks, CUDA-graph skips (each skip
    means `reduce-overhead` ran that graph without CUDA graphs)."""
    from torch._dynamo.utils import counters

    return {
        "unique_graphs": counters["stats"]["unique_graphs"],
        "graph_breaks": sum(counters["graph_break"].values()),
        "cudagraph_skips": counters["inductor"]["cudagraph_skips"],
    }


def parameter_counts(model):
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def quartiles(values):
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], statistics.median(values), q[2]


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_features().name}, {torch.get_num_threads()} threads"


def machine(device):
    """What every figure is printed beside: the device's name, the CPU (its model, torch's CPU capability and
    whether it computes bf16 natively, which decides the frozen parts' CPU precision)."""
    features = cpu_features()
    return {
        "device_name": device_name(device),
        "cpu": features.describe(),
        "cpu_capability": features.capability,
        "native_bf16": features.native_bf16,
    }


def rss_bytes(field):
    """VmRSS (now) or VmHWM (peak) of this process, from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

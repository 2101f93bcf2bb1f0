"""In which precision the frozen ViT and OPT are stored and compute (model.vit_precision and
model.opt_precision: fp16 | bf16 | fp32 | auto), and the one decision of what a CPU computes them in
(cpu_precision).

- CUDA: a part computes in its precision, fp16/bf16 under autocast of that dtype; auto is LAVIS's fp16.
  (LAVIS's maybe_autocast, blip2.py:36-44, forces fp16 on any GPU whatever the part's precision.)
- CPU: cpu_precision() decides, from what torch computes with (torch.backends.cpu.get_cpu_capability()) and
  the CPU's flags (avx512_bf16, amx_bf16 in /proc/cpuinfo, where there is one):
  - fp16 -> fp32: CPUs have no fast fp16 kernels (LAVIS's load_model_and_preprocess calls model.float()
    on CPU);
  - bf16 -> bf16 under CPU bf16 autocast: half of fp32's memory (5.3 instead of 10.6 GB for OPT-2.7B), and
    on a CPU with AVX512-BF16 or AMX an OPT-2.7B-sized matmul ran 5-7x faster than in fp32. Without them
    it still runs, with a warning: on an AVX2 AMD EPYC the same matmul took 4.5x fp32's time forward and
    59x backward, and a real-size training step (batch 2) was still in its backward after 15 min, where
    fp32 took 3 min (batch 1);
  - auto -> bf16 where the CPU computes it natively, fp32 otherwise; fp32 -> fp32.
  The choice is logged once per process, with its reason.
- Storage: a part is built before its device is known, so it is stored in its precision, auto in fp16
  where CUDA is available and in the CPU's choice elsewhere; at first use on a device a part stored
  otherwise than it computes there is converted once (Blip2OPTGated.prepare_frozen_parts).
- CPU autocast leaves layer_norm alone (CUDA's runs it in fp32), and the CPU kernel refuses bf16 weights on
  an fp32 input, so the parts' norms are stored in fp32, as LAVIS stores its fp16 ViT's
  (eva_vit.py:convert_weights_to_fp16).
- fp32 parts run under whatever autocast surrounds them (the task's run.amp / run.amp_dtype).
"""

import contextlib
import logging
import platform
import warnings
from dataclasses import dataclass
from typing import Optional

import torch

from lavis_gated.configs.model_config import PRECISIONS, STORED_DTYPES

CPUINFO = "/proc/cpuinfo"
# the x86 flags of native bf16 arithmetic (oneDNN's bf16 matmuls and torch's AVX512 bf16 kernels use them)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# what an explicit bf16 costs where they are missing, measured on an AVX2 AMD EPYC (1 thread; fp32 = 1)
SLOWDOWN = (
    "an OPT-2.7B-sized matmul took 4.5x fp32's time forward and 59x backward, and a real-size training "
    "step (batch 2) was still in its backward after 15 min, where fp32 took 3 min (batch 1)"
)


class SlowPrecisionWarning(UserWarning):
    """bf16 asked for on a CPU that emulates it: the run is correct but many times slower than fp32."""


def check_precision(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {list(PRECISIONS)}")
    return precision


def dtype_of(precision):
    """The torch dtype a part in `precision` (fp16 | bf16 | fp32) is stored in; auto is chosen first
    (storage_precision, compute_precision)."""
    if check_precision(precision) not in STORED_DTYPES:
        raise ValueError(f"precision {precision!r} has no dtype of its own: it is chosen per device")
    return getattr(torch, STORED_DTYPES[precision])


def stored_dtype(module):
    """The dtype `module`'s matmul weights are stored in (the first Linear/Conv weight's)."""
    return next(m.weight.dtype for m in module.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))


@dataclass(frozen=True)
class CpuFeatures:
    """What decides whether this CPU computes bf16 natively.

    capability: torch.backends.cpu.get_cpu_capability() (AVX2, AVX512, ...: the kernels torch runs);
    bf16_flags: the NATIVE_BF16_FLAGS that /proc/cpuinfo lists, None where there is no such file;
    name: the CPU's model name (/proc/cpuinfo, else platform's)."""

    capability: str
    bf16_flags: Optional[tuple[str, ...]]
    name: str

    @property
    def native_bf16(self):
        """True where torch runs its AVX512 kernels on a CPU with AVX512-BF16 or AMX-BF16. Elsewhere (AVX2,
        ARM, flags unknown) bf16 is treated as emulated: fp32 is the safe choice."""
        return self.capability == "AVX512" and bool(self.bf16_flags)

    def describe(self):
        """e.g. 'AMD EPYC, torch CPU capability AVX2, no avx512_bf16 or amx_bf16 flag'."""
        if self.bf16_flags is None:
            flags = f"CPU flags unknown (no {CPUINFO})"
        elif self.bf16_flags:
            flags = " ".join(self.bf16_flags)
        else:
            flags = f"no {' or '.join(NATIVE_BF16_FLAGS)} flag"
        return f"{self.name}, torch CPU capability {self.capability}, {flags}"


def cpu_features(cpuinfo=None):
    """This machine's CpuFeatures (cpuinfo: the file to read the flags and model name from, default
    CPUINFO)."""
    fields = {}
    try:
        with open(cpuinfo or CPUINFO, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())  # the first processor's
    except OSError:
        fields = None
    flags = None
    if fields is not None:
        present = set(fields.get("flags", "").split())
        flags = tuple(flag for flag in NATIVE_BF16_FLAGS if flag in present)
    name = (fields or {}).get("model name") or platform.processor() or platform.machine()
    return CpuFeatures(torch.backends.cpu.get_cpu_capability(), flags, name)


@dataclass(frozen=True)
class PrecisionChoice:
    """What a part configured as `requested` computes in on this CPU (`precision`: fp32 | bf16), and why.
    slow: bf16 on a CPU without native bf16."""

    requested: str
    precision: str
    reason: str
    features: CpuFeatures
    slow: bool = False


_announced = set()  # the PrecisionChoices already logged in this process


def cpu_precision(requested="auto", setting="precision", features=None):
    """The one decision of the precision a frozen part computes in on this CPU (the rules: module
    docstring), logged once per process with its reason; bf16 without native support warns
    (SlowPrecisionWarning) with the slowdown to expect. setting: the config key or flag asking, named in
    the messages; features: CpuFeatures (default: this machine's)."""
    check_precision(requested)
    features = features or cpu_features()
    cpu = features.describe()
    slow = False
    if requested == "auto":
        chosen = "bf16" if features.native_bf16 else "fp32"
        why = "computes bf16 natively" if features.native_bf16 else "has no native bf16"
        reason = f"auto: {chosen}, as this CPU {why} ({cpu})"
    elif requested == "fp16":
        chosen, reason = "fp32", "fp16 runs in fp32 on CPU (no fast fp16 kernels; LAVIS calls model.float())"
    elif requested == "bf16":
        chosen, slow = "bf16", not features.native_bf16
        reason = f"bf16 as set; this CPU {'lacks' if slow else 'has'} native bf16 ({cpu})"
    else:
        chosen, reason = "fp32", "fp32 as set"
    choice = PrecisionChoice(requested, chosen, reason, features, slow)
    if choice not in _announced:  # named by the first setting that asks for it
        _announced.add(choice)
        logging.info("CPU precision of %s: %s", setting, reason)
        if slow:
            warnings.warn(
                f"{setting} is bf16 on a CPU without native bf16 ({cpu}): expect it to run many times "
                f"slower than fp32 (on an AVX2 AMD EPYC {SLOWDOWN}); set it to auto or fp32 unless "
                "memory forces bf16",
                SlowPrecisionWarning,
                stacklevel=2,
            )
    return choice


def compute_precision(requested, device_type, setting="precision"):
    """The precision (fp16 | bf16 | fp32) a part configured as `requested` computes in on `device_type`:
    cpu_precision's choice on CPU; elsewhere the requested one, auto meaning LAVIS's fp16."""
    if device_type == "cpu":
        return cpu_precision(requested, setting).precision
    return "fp16" if check_precision(requested) == "auto" else requested


def storage_precision(requested, setting="precision"):
    """The precision a part configured as `requested` is built in, before its device is known: auto is
    LAVIS's fp16 where CUDA is available (converted at first use if it then runs on CPU), the CPU's choice
    elsewhere (so that a CPU run never holds it in a precision it does not compute in)."""
    if check_precision(requested) != "auto":
        return requested
    return "fp16" if torch.cuda.is_available() else cpu_precision("auto", setting).precision


def frozen_autocast(precision, device_type):
    """Autocast in the precision (fp16 | bf16) a frozen part computes in; nothing for fp32 parts."""
    if precision == "fp32" or not torch.amp.is_autocast_available(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype_of(precision))


def norms_in_fp32(module):
    """LayerNorms of `module` stored in fp32 (a few kB; see the module docstring); returns the module."""
    for child in module.modules():
        if isinstance(child, torch.nn.LayerNorm):
            child.float()
    return module


def autocast_off(device_type):
    """A block whose ops run in their inputs' dtype even under autocast (the small trainable style modules).
    Devices without autocast (e.g. meta, where shapes are checked without memory) have nothing to turn off."""
    if not torch.amp.is_autocast_available(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)

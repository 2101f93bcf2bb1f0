"""In which dtype the frozen ViT and OPT compute, given the one they are stored in (model.vit_precision /
model.opt_precision: fp16 | bf16 | fp32).

- CUDA: a part stored in fp16/bf16 computes under autocast in that dtype. (LAVIS's maybe_autocast,
  blip2.py:36-44, forces fp16 on any GPU whatever the part's precision.)
- CPU, fp16: converted to fp32 once, at first use (fp16 arithmetic on CPU is slow, and LAVIS's
  load_model_and_preprocess calls model.float() on CPU).
- CPU, bf16: kept in bf16 (half of fp32's memory: 5.3 instead of 10.6 GB for OPT-2.7B) and computed under
  CPU bf16 autocast, which CPUs with AVX512-BF16 or AMX run natively. CPU autocast leaves layer_norm alone
  (CUDA's runs it in fp32), and the CPU kernel refuses bf16 weights on an fp32 input, so the parts' norms are
  stored in fp32, as LAVIS stores its fp16 ViT's (eva_vit.py:convert_weights_to_fp16).
- fp32 parts run under whatever autocast surrounds them (the task's run.amp / run.amp_dtype).
"""

import contextlib

import torch

PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def check_precision(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {sorted(PRECISIONS)}")
    return precision


def converted_to_fp32_on(device_type, precision):
    """Whether a part stored in `precision` is converted to fp32 before it computes on `device_type`."""
    return device_type == "cpu" and precision == "fp16"


def frozen_autocast(precision, device_type):
    """Autocast in the storage precision (fp16 | bf16) around a frozen part; nothing for fp32 parts."""
    computed_as_stored = precision != "fp32" and not converted_to_fp32_on(device_type, precision)
    if not computed_as_stored or not torch.amp.is_autocast_available(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=PRECISIONS[precision])


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

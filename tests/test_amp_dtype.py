"""run.amp_dtype: fp16 amp uses a GradScaler, bf16 amp does not (its range needs none), CPU runs never do."""

import logging
import types

import pytest
import torch
from omegaconf import OmegaConf

from lavis_gated.runners.runner_gated import GatedRunner
from lavis_gated.tasks.style_captioning import StyleCaptioningTask


def scaler_for(cuda_enabled, **run):
    runner = types.SimpleNamespace(
        config=types.SimpleNamespace(run_cfg=OmegaConf.create(run)), cuda_enabled=cuda_enabled, _scaler=None
    )
    return GatedRunner.scaler.fget(runner)


@pytest.mark.filterwarnings("ignore:.*CUDA is not available")
def test_grad_scaler_only_for_fp16_amp_on_cuda():
    assert isinstance(scaler_for(True, amp=True, amp_dtype="float16"), torch.amp.GradScaler)
    assert isinstance(scaler_for(True, amp=True), torch.amp.GradScaler)  # float16 is the default
    assert scaler_for(True, amp=True, amp_dtype="bfloat16") is None
    assert scaler_for(True, amp=False, amp_dtype="float16") is None
    assert scaler_for(False, amp=True, amp_dtype="float16") is None


@pytest.mark.parametrize(
    "amp_dtype, device, opt_precision, warned",
    [
        ("bfloat16", "cuda", "fp16", True),  # no GradScaler, fp16 gradients through the frozen OPT
        ("bfloat16", "cuda", "bf16", False),
        ("float16", "cuda", "fp16", False),  # the GradScaler scales them
        ("bfloat16", "cpu", "fp16", False),  # on CPU the frozen parts run in fp32
    ],
)
def test_bf16_amp_over_an_fp16_opt_is_warned(caplog, amp_dtype, device, opt_precision, warned):
    task = StyleCaptioningTask(amp=True, amp_dtype=amp_dtype)
    with caplog.at_level(logging.WARNING):
        task.warn_unscaled_fp16(
            types.SimpleNamespace(opt_precision=opt_precision), OmegaConf.create({"device": device})
        )
    assert ("model.opt_precision: bf16" in caplog.text) == warned

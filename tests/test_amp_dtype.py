"""run.amp_dtype: fp16 amp uses a GradScaler, bf16 amp does not (its range needs none), CPU runs never do."""
import types

import pytest
import torch
from omegaconf import OmegaConf

from lavis_gated.runners.runner_gated import GatedRunner


def scaler_for(cuda_enabled, **run):
    runner = types.SimpleNamespace(config=types.SimpleNamespace(run_cfg=OmegaConf.create(run)),
                                   cuda_enabled=cuda_enabled, _scaler=None)
    return GatedRunner.scaler.fget(runner)


@pytest.mark.filterwarnings("ignore:.*CUDA is not available")
def test_grad_scaler_only_for_fp16_amp_on_cuda():
    assert isinstance(scaler_for(True, amp=True, amp_dtype="float16"), torch.amp.GradScaler)
    assert isinstance(scaler_for(True, amp=True), torch.amp.GradScaler)  # float16 is the default
    assert scaler_for(True, amp=True, amp_dtype="bfloat16") is None
    assert scaler_for(True, amp=False, amp_dtype="float16") is None
    assert scaler_for(False, amp=True, amp_dtype="float16") is None

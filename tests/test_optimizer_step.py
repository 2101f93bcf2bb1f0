"""Non-finite steps are skipped, counted and logged; too many in a row stop the run; clipping works."""

import copy
import json
import logging
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers.tiny_model import batch, build_tiny
from torch import nn

from lavis_gated.tasks.optimizer_step import GuardedOptimizerStep, NonFiniteTrainingError
from lavis_gated.tasks.style_captioning import StyleCaptioningTask


def linear_and_adamw(seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(3, 1)
    return model, torch.optim.AdamW(model.parameters(), lr=0.1)


def backward(model, x):
    loss = model(x).pow(2).mean()
    loss.backward()
    return torch.isfinite(loss.detach())


def state(model, optimizer):
    return copy.deepcopy((model.state_dict(), optimizer.state_dict()))


@pytest.mark.parametrize("poison", ["nan_input", "inf_grad"])
def test_non_finite_step_changes_nothing_and_is_counted(caplog, poison):
    model, optimizer = linear_and_adamw()
    step = GuardedOptimizerStep(optimizer)
    step(backward(model, torch.ones(2, 3)))
    before = state(model, optimizer)

    if poison == "nan_input":
        finite = backward(model, torch.tensor([[1.0, float("nan"), 0.0]]))
        assert not finite
    else:  # a finite loss whose gradient overflowed
        finite = backward(model, torch.ones(2, 3))
        model.weight.grad[0, 0] = math.inf
    with caplog.at_level(logging.WARNING):
        stepped, grad_norm = step(finite, where="at epoch 3, iteration 7")

    assert not stepped and not math.isfinite(grad_norm)
    after = state(model, optimizer)
    for key in before[0]:
        assert torch.equal(before[0][key], after[0][key])
    assert before[1]["state"][0]["step"] == after[1]["state"][0]["step"] == 1
    assert all(p.grad is None for p in model.parameters())  # the poisoned gradient is gone
    assert step.skipped == 1 and step.consecutive_skips == 1
    assert "at epoch 3, iteration 7: update skipped (1 in a row, 1 in total)" in caplog.text

    assert step(backward(model, torch.ones(2, 3)))[0]
    assert step.skipped == 1 and step.consecutive_skips == 0


def test_more_skips_in_a_row_than_allowed_stop_the_run():
    model, optimizer = linear_and_adamw()
    step = GuardedOptimizerStep(optimizer, max_consecutive_skips=2)
    nan = torch.tensor([[float("nan")] * 3])
    step(backward(model, nan))
    step(backward(model, torch.ones(1, 3)))  # a good step resets the run of skips
    step(backward(model, nan))
    step(backward(model, nan))
    with pytest.raises(
        NonFiniteTrainingError, match=r"3 optimizer steps in a row.*run.max_consecutive_skips=2"
    ):
        step(backward(model, nan), where="at epoch 0, iteration 4")
    assert step.skipped == 4


def test_gradients_are_clipped_to_max_grad_norm():
    model, _ = linear_and_adamw()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # a step moves the parameters by the gradient
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    backward(model, torch.full((2, 3), 100.0))
    raw_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]).item()

    stepped, grad_norm = GuardedOptimizerStep(optimizer, max_grad_norm=0.5)(torch.tensor(True))

    moved = torch.cat([p.detach().flatten() for p in model.parameters()]) - before
    assert stepped and raw_norm > 100 and grad_norm.item() == pytest.approx(raw_norm)
    assert moved.norm().item() == pytest.approx(0.5, rel=1e-4)


def test_rejects_non_positive_max_grad_norm():
    with pytest.raises(ValueError, match="run.max_grad_norm"):
        GuardedOptimizerStep(linear_and_adamw()[1], max_grad_norm=0)


def test_fp16_scaler_overflow_is_skipped_and_lowers_the_scale():
    model, optimizer = linear_and_adamw()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    step = GuardedOptimizerStep(optimizer, scaler)
    before = state(model, optimizer)

    loss = model(torch.ones(2, 3)).pow(2).mean()
    scaler.scale(loss).backward()
    model.weight.grad[0, 0] = math.inf
    assert not step(torch.isfinite(loss.detach()))[0]

    assert scaler.get_scale() == 2.0**15
    assert torch.equal(before[0]["weight"], model.weight)
    scaler.scale(model(torch.ones(2, 3)).pow(2).mean()).backward()
    assert step(torch.tensor(True))[0] and not torch.equal(before[0]["weight"], model.weight)


def step_on_rank(rank, init_file, out_dir):
    """Rank 0 sees a NaN batch, rank 1 a good one; each writes whether it stepped."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        model, optimizer = linear_and_adamw()
        finite = backward(model, torch.full((2, 3), math.nan) if rank == 0 else torch.ones(2, 3))
        stepped, _ = GuardedOptimizerStep(optimizer)(finite)
        (out_dir / f"rank{rank}.json").write_text(json.dumps({"stepped": stepped, "finite": bool(finite)}))
    finally:
        dist.destroy_process_group()


def test_all_ranks_skip_when_one_rank_is_not_finite(tmp_path):
    # No DDP here, so rank 1's own gradient stays finite: only the shared decision stops its update.
    mp.spawn(step_on_rank, args=(tmp_path / "init", tmp_path), nprocs=2)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results == [{"stepped": False, "finite": False}, {"stepped": False, "finite": True}]


class ConstantLR:
    """The schedule interface of LAVIS's schedulers, with a fixed rate."""

    def step(self, cur_epoch, cur_step):
        pass


def train_tiny(batches):
    """The task's own training loop on the tiny model over `batches`; returns (stats, trainable state)."""
    model = build_tiny()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    task = StyleCaptioningTask(style_name_weight=0.1, style_kl_weight=0.1, style_ce_weight=1.0)
    stats = task._train_inner_loop(0, len(batches), model, iter(batches), optimizer, ConstantLR())
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return stats, trainable


def test_training_loop_skips_a_nan_batch_as_if_it_were_absent():
    good = [batch(seed=1), batch(seed=2)]
    poisoned = batch(seed=3)
    poisoned["image"][0, 0, 0, 0] = float("nan")

    stats, with_nan = train_tiny([good[0], poisoned, good[1]])
    clean_stats, without = train_tiny(good)

    assert stats["skipped_steps"] == 1 and clean_stats["skipped_steps"] == 0
    assert math.isfinite(float(stats["loss"]))
    assert float(stats["loss"]) == pytest.approx(float(clean_stats["loss"]), rel=1e-6)
    for name, value in without.items():
        assert torch.equal(with_nan[name], value), name

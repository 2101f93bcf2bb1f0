"""One training epoch's inner loop: LAVIS's (base_task.py:_train_inner_loop) with every loss part logged,
autocast in the configured dtype, non-finite steps skipped (optimizer_step), optional gradient clipping, and
statistics synchronised on the model's device (logger.py:43 assumes CUDA). Skipped steps are left out of
the averages. Progress lines (and TensorBoard's training curves) come from runners/training_progress, in
place of MetricLogger.log_every's, which prints every log_freq steps only.
"""

import logging

import torch
import torch.distributed as dist
from lavis.common.dist_utils import is_dist_avail_and_initialized
from lavis.common.logger import MetricLogger, SmoothedValue
from lavis.datasets.data_utils import prepare_sample

from lavis_gated.runners.training_progress import TrainingProgress


def train_inner_loop(
    task,
    epoch,
    iters_per_epoch,
    model,
    data_loader,
    lr_scheduler,
    step,
    scaler=None,
    start_iters=None,
    log_freq=50,
    cuda_enabled=False,
    accum_grad_iters=1,
    progress=None,
):
    """Train `iters_per_epoch` steps; returns the epoch's averaged statistics (strings, as LAVIS logs them).

    task: provides autocast(cuda_enabled) and training_terms(model, samples); step: a GuardedOptimizerStep;
    progress: the run's TrainingProgress (None: lines without the run's ETA).
    """
    progress = progress or TrainingProgress(log_freq=log_freq)
    if not hasattr(data_loader, "__next__"):
        data_loader = iter(data_loader)
    skipped_before = step.skipped
    metric_logger = MetricLogger(delimiter="  ")
    metric_logger.add_meter("lr", SmoothedValue(window_size=1, fmt="{value:.6f}"))
    inner_epoch = epoch if start_iters is None else start_iters // iters_per_epoch
    window, finite = [], None
    progress.epoch_started(epoch, iters_per_epoch)
    for i in range(iters_per_epoch):
        samples = prepare_sample(next(data_loader), cuda_enabled=cuda_enabled)
        samples.update({"epoch": inner_epoch, "num_iters_per_epoch": iters_per_epoch, "iters": i})
        lr_scheduler.step(cur_epoch=inner_epoch, cur_step=i)
        with task.autocast(cuda_enabled):
            terms = task.training_terms(model, samples)
        loss = terms["loss"]
        (scaler.scale(loss) if scaler is not None else loss).backward()
        window.append(terms)
        loss_is_finite = torch.isfinite(loss.detach())
        finite = loss_is_finite if finite is None else finite & loss_is_finite
        if (i + 1) % accum_grad_iters == 0:
            stepped, grad_norm = step(finite, where=f"at epoch {epoch}, iteration {i}")
            if stepped:
                for t in window:
                    values = {k: v.item() for k, v in t.items()}
                    metric_logger.update(**values)
                    progress.record(values)
                metric_logger.update(grad_norm=grad_norm.item())
                progress.record({"grad_norm": grad_norm.item()})
            window, finite = [], None
        metric_logger.update(lr=step.optimizer.param_groups[0]["lr"])
        progress.record({"lr": step.optimizer.param_groups[0]["lr"]})
        progress.step_done(i, skipped=step.skipped)
    progress.epoch_ended()
    synchronise_meters(metric_logger, device="cuda" if cuda_enabled else "cpu")
    logging.info("Averaged stats: " + str(metric_logger.global_avg()))
    stats = {k: f"{meter.global_avg:.4f}" for k, meter in metric_logger.meters.items()}
    stats["skipped_steps"] = step.skipped - skipped_before
    return stats


def synchronise_meters(metric_logger, device):
    """Sum counts and totals of every meter across ranks (on CPU tensors under gloo)."""
    if not is_dist_avail_and_initialized():
        return
    for meter in metric_logger.meters.values():
        t = torch.tensor([meter.count, meter.total], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        meter.count, meter.total = int(t[0].item()), float(t[1].item())

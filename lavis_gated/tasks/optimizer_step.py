"""An optimizer update that never applies a non-finite gradient.

A step whose loss or gradient norm is NaN or inf is skipped: no parameter or optimizer-state change, only a
count and a warning (the backward pass still runs, so DDP's gradient all-reduce stays in step). More than
`max_consecutive_skips` skipped steps in a row stop the run, since by then the weights or the data are broken,
not one batch. Gradients are clipped to `max_grad_norm` when it is set. Under torch.distributed every rank
takes the same decision, so the replicas never drift apart.
"""

import logging

import torch
import torch.distributed as dist
from lavis.common.dist_utils import is_dist_avail_and_initialized


class NonFiniteTrainingError(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss or gradient norm."""


class GuardedOptimizerStep:
    """Unscale (fp16), measure, clip and apply the accumulated gradients, or skip them."""

    def __init__(self, optimizer, scaler=None, max_grad_norm=None, max_consecutive_skips=20):
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"run.max_grad_norm must be positive or null, got {max_grad_norm!r}")
        self.optimizer = optimizer
        self.scaler = scaler
        self.max_grad_norm = max_grad_norm
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped = 0
        self.consecutive_skips = 0

    def __call__(self, loss_is_finite, where=""):
        """Update the parameters unless `loss_is_finite` (bool tensor) is false on any rank or the
        gradient norm is not finite. Returns (stepped, grad_norm before clipping); zeroes the grads."""
        optimizer, scaler = self.optimizer, self.scaler
        if scaler is not None:
            scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params]).to(loss_is_finite.device)
        finite = (torch.isfinite(grad_norm) & loss_is_finite).to(torch.int32)
        if is_dist_avail_and_initialized():
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        stepped = bool(finite.item())
        if stepped:
            if self.max_grad_norm is not None:
                torch.nn.utils.clip_grads_with_norm_(params, self.max_grad_norm, grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
            else:
                optimizer.step()
            self.consecutive_skips = 0
        else:
            self._count_skip(grad_norm, where)
        if scaler is not None:
            scaler.update()  # an overflow lowers the loss scale
        optimizer.zero_grad()
        return stepped, grad_norm

    def _count_skip(self, grad_norm, where):
        self.skipped += 1
        self.consecutive_skips += 1
        logging.warning(
            "Non-finite loss or gradient norm (%s) %s: update skipped (%d in a row, %d in total).",
            grad_norm.item(),
            where,
            self.consecutive_skips,
            self.skipped,
        )
        if self.consecutive_skips > self.max_consecutive_skips:
            raise NonFiniteTrainingError(
                f"{self.consecutive_skips} optimizer steps in a row had a non-finite loss or gradient "
                f"norm (last {where}), more than run.max_consecutive_skips={self.max_consecutive_skips}. "
                "The run is stopped; lower run.init_lr, set run.max_grad_norm, use run.amp_dtype: "
                "bfloat16, or check the data of those batches."
            )

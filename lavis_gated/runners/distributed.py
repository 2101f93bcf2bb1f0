"""Process-group set-up that also works on CPU (gloo).

Replaces lavis.common.dist_utils.init_distributed_mode, which always calls torch.cuda.set_device,
hard-codes the "nccl" backend and waits 365 days at a hung barrier (dist_utils.py:57-90).
"""

import datetime
import os

import torch
import torch.distributed as dist
from lavis.common.dist_utils import setup_for_distributed

from lavis_gated.configs.run_config import runner_config


def init_distributed_mode(run_cfg):
    """Join the process group started by torchrun or SLURM and record the layout in `run_cfg`.

    Sets run_cfg.distributed (False when no launcher is found), rank, world_size, gpu (the local
    rank), dist_backend and dist_url. Reads run.device, run.dist_url (default "env://") and
    run.dist_timeout_minutes (default 30).
    """
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        rank = int(os.environ["RANK"])
        world_size = int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    elif "SLURM_PROCID" in os.environ:
        rank = int(os.environ["SLURM_PROCID"])
        # LAVIS leaves world_size unset on this path (dist_utils.py:62-64).
        world_size = int(os.environ["SLURM_NTASKS"])
        local_rank = int(os.environ.get("SLURM_LOCALID", 0))
    else:
        # print, not logging.info: the root logger's first use would configure it at WARNING
        # before lavis.common.logger.setup_logger gets to.
        print("Not using distributed mode", flush=True)
        run_cfg.distributed = False
        return

    use_cuda = runner_config(run_cfg).device.startswith("cuda") and torch.cuda.is_available()
    run_cfg.distributed = True
    run_cfg.rank = rank
    run_cfg.world_size = world_size
    run_cfg.gpu = local_rank
    run_cfg.dist_backend = "nccl" if use_cuda else "gloo"
    run_cfg.dist_url = run_cfg.get("dist_url", "env://")

    if use_cuda:
        torch.cuda.set_device(local_rank)
    print(
        f"| distributed init (rank {rank}, world {world_size}, {run_cfg.dist_backend}): {run_cfg.dist_url}",
        flush=True,
    )
    dist.init_process_group(
        backend=run_cfg.dist_backend,
        init_method=run_cfg.dist_url,
        world_size=world_size,
        rank=rank,
        # A rank that died should fail the others within minutes, not hang them for a year.
        timeout=datetime.timedelta(minutes=float(runner_config(run_cfg).dist_timeout_minutes)),
    )
    # NCCL otherwise guesses the barrier's device and warns that it may hang.
    dist.barrier(**({"device_ids": [local_rank]} if use_cuda else {}))
    setup_for_distributed(rank == 0)

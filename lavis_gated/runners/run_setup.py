"""From a project YAML to a ready runner, as LAVIS's train.py does: config, process group, seeds, logging,
threads, task, datasets, model and runner. Shared by training and evaluation.

Config keys read here, beyond LAVIS's: run.runner (default "runner_gated"), run.imports (modules imported
before the config is resolved, so that models, builders, tasks or runners of yours register themselves),
run.frozen_feature_cache (datasets/feature_cache.py) and run.num_threads (common/threads.py).

Process-group set-up that also works on CPU (gloo).

Replaces lavis.common.dist_utils.init_distributed_mode, which always calls torch.cuda.set_device,
hard-codes the "nccl" backend and waits 365 days at a hung barrier (dist_utils.py:57-90).

Seeds that make a run a function of its config, so that it can be repeated and resumed exactly.

Every epoch reseeds Python, numpy and torch from (run.seed, epoch, rank): the random numbers of epoch
e do not depend on what ran before, so a run resumed at epoch e draws the same ones as a run that
never stopped, without storing generator states in checkpoints.
"""

import argparse
import dataclasses
import datetime
import importlib
import logging
import os
import random
import time

import numpy as np
import torch
import torch.distributed as dist
from lavis.common.config import Config
from lavis.common.dist_utils import get_rank, is_dist_avail_and_initialized, setup_for_distributed
from lavis.common.logger import setup_logger
from lavis.common.registry import registry
from omegaconf import OmegaConf, open_dict

from lavis_gated.common.threads import set_num_threads
from lavis_gated.configs.run_config import check_run_block, runner_config
from lavis_gated.datasets.feature_cache import attach_feature_cache


def argument_parser(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg-path", required=True, help="path to configuration file.")
    parser.add_argument(
        "--options",
        nargs="+",
        action="extend",
        help="override settings of the config file, as key=value pairs merged into it.",
    )
    return parser


def import_user_modules(cfg_path):
    """Import run.imports from the YAML file: Config needs their registrations to resolve names."""
    for name in OmegaConf.load(cfg_path).get("run", {}).get("imports", None) or []:
        importlib.import_module(name)


def setup_seeds(cfg):
    seed_everything(cfg.run_cfg.seed + get_rank())
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def make_job_id():
    """Time stamp naming output_dir/<job_id>, the same on every rank.

    LAVIS's now() keeps 10-minute resolution (two runs share a folder) and is taken on each rank
    separately (ranks can straddle a boundary), so rank 0's second-resolution stamp is broadcast.
    """
    job_id = [time.strftime("%Y%m%d%H%M%S")]
    if is_dist_avail_and_initialized():
        dist.broadcast_object_list(job_id, src=0)
    return job_id[0]


def with_frozen_feature_cache(cfg, task, model, datasets):
    """The datasets reading cached frozen features when run.frozen_feature_cache names a folder."""
    settings = runner_config(cfg.run_cfg)
    if not settings.frozen_feature_cache:
        return datasets
    run = cfg.run_cfg
    device = torch.device(settings.device)
    amp = getattr(task, "amp", False) and device.type == "cuda"
    # encoded at the batch size the steps will use (see feature_cache.build_store)
    batch_size = run.get("batch_size_eval") if run.get("evaluate", False) else run.get("batch_size_train")
    root = os.path.abspath(os.path.expanduser(settings.frozen_feature_cache))
    return attach_feature_cache(
        datasets,
        model,
        root,
        device,
        autocast_dtype=task.amp_dtype if amp else None,
        batch_size=batch_size or 16,
        num_workers=run.get("num_workers", 0),
    )


def check_config(cfg):
    """Refuse unknown keys in every block before anything is built: run (the task's own keys, the runner's,
    LAVIS's), model and datasets (through their classes' check_config, where they have one)."""
    task_cls = registry.get_task_class(cfg.run_cfg.get("task"))
    check_run_block(cfg.run_cfg, getattr(task_cls, "RUN_KEYS", ()))
    model_cls = registry.get_model_class(cfg.model_cfg.get("arch"))
    if hasattr(model_cls, "check_config"):
        model_cls.check_config(cfg.model_cfg)
    for name, block in (cfg.datasets_cfg or {}).items():
        builder_cls = registry.get_builder_class(name)
        if hasattr(builder_cls, "check_config"):
            builder_cls.check_config(block, where=f"datasets.{name}")


def record_model_settings(cfg, model):
    """The model's resolved settings (its YAML over the config dataclass's defaults) into the run config, so
    that log.txt and every checkpoint hold all of them, not only those the YAMLs set."""
    settings = getattr(model, "config", None)
    if dataclasses.is_dataclass(settings):
        with open_dict(cfg.model_cfg):
            cfg.model_cfg.merge_with(dataclasses.asdict(settings))


def build_runner(args, config_cls=Config):
    """Config, process group, seeds, logging, threads, task, datasets, model and runner, as LAVIS does."""
    import_user_modules(args.cfg_path)
    cfg = config_cls(args)
    if getattr(args, "resume", None):
        with open_dict(cfg.run_cfg):
            cfg.run_cfg.resume_ckpt_path = args.resume
    check_config(cfg)
    init_distributed_mode(cfg.run_cfg)
    setup_seeds(cfg)
    setup_logger()  # after the process group exists, so that only rank 0 logs at INFO
    set_num_threads(cfg.run_cfg)
    # not cfg.pretty_print(): ~200 lines on the screen; the runner writes the resolved config into log.txt
    logging.info(
        "config %s%s (resolved: the first entry of the run folder's log.txt)",
        args.cfg_path,
        f" with --options {' '.join(args.options)}" if getattr(args, "options", None) else "",
    )
    job_id = make_job_id()

    task = registry.get_task_class(cfg.run_cfg.task).setup_task(cfg=cfg)
    datasets = task.build_datasets(cfg)
    model = task.build_model(cfg)
    record_model_settings(cfg, model)
    datasets = with_frozen_feature_cache(cfg, task, model, datasets)

    runner_name = runner_config(cfg.run_cfg).runner
    runner_cls = registry.get_runner_class(runner_name)
    if runner_cls is None:
        raise KeyError(f"run.runner {runner_name!r} is not registered; known: {registry.list_runners()}")
    return runner_cls(cfg=cfg, job_id=job_id, task=task, model=model, datasets=datasets)


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


def seed_everything(seed):
    """Seed Python's, numpy's and torch's (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_seed(seed, epoch, rank):
    """A 32-bit seed for one rank's epoch, well mixed so that nearby triples give unrelated streams."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])

"""Train with LAVIS, lavis_gated's components registered (mirrors LAVIS's train.py).

    python lavis_gated/train.py --cfg-path CFG.yaml [--options run.max_epoch=3 ...]
    python -m lavis_gated.train --cfg-path CFG.yaml
    python -m torch.distributed.run --nproc_per_node=2 lavis_gated/train.py --cfg-path CFG.yaml
    python lavis_gated/train.py --cfg-path CFG.yaml --resume OUTPUT_DIR/JOB_ID/checkpoint_last.pth

Config keys read here, beyond LAVIS's:
- run.runner: registered runner name (default "runner_gated").
- run.imports: list of modules to import before the config is built, so that models, builders,
  tasks or runners of your own register themselves (the modules must be on sys.path).
- run.frozen_feature_cache: folder of the frozen-feature cache (lavis_gated/datasets/feature_cache.py).
--resume CKPT is run.resume_ckpt_path=CKPT: the run continues in CKPT's folder (see runner_gated).
"""
import os
import sys

if not __package__:
    # Run as a file, Python puts lavis_gated/ first on sys.path, and its datasets/, models/ and
    # tasks/ then shadow top-level packages (transformers probes for `datasets`).
    import importlib.util

    _here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _here]
    if importlib.util.find_spec("lavis_gated") is None:
        sys.path.insert(0, os.path.dirname(_here))

import argparse  # noqa: E402
import importlib  # noqa: E402
import time  # noqa: E402

import lavis_gated  # noqa: E402,F401  (registers our components before Config looks them up)
import lavis.tasks as tasks  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from lavis.common.config import Config  # noqa: E402
from lavis.common.dist_utils import get_rank, is_dist_avail_and_initialized  # noqa: E402
from lavis.common.logger import setup_logger  # noqa: E402
from lavis.common.registry import registry  # noqa: E402
from omegaconf import OmegaConf, open_dict  # noqa: E402

from lavis_gated.datasets.feature_cache import attach_feature_cache  # noqa: E402
from lavis_gated.runners.distributed import init_distributed_mode  # noqa: E402
from lavis_gated.runners.reproducibility import seed_everything  # noqa: E402
from lavis_gated.runners.threads import set_num_threads  # noqa: E402


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


def parse_args(argv=None, description="Training"):
    return argument_parser(description).parse_args(argv)


def parse_train_args(argv=None):
    parser = argument_parser("Training")
    parser.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue the run saved in CHECKPOINT (e.g. its checkpoint_last.pth), in its folder; "
        "the same as --options run.resume_ckpt_path=CHECKPOINT.",
    )
    return parser.parse_args(argv)


def import_user_modules(cfg_path):
    """Import run.imports from the YAML file: Config needs their registrations to resolve names."""
    modules = OmegaConf.load(cfg_path).get("run", {}).get("imports", None) or []
    for name in modules:
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
    root = cfg.run_cfg.get("frozen_feature_cache")
    if not root:
        return datasets
    run = cfg.run_cfg
    device = torch.device(run.get("device", "cuda"))
    amp = getattr(task, "amp", False) and device.type == "cuda"
    # encoded at the batch size the steps will use (see feature_cache.build_store)
    batch_size = run.get("batch_size_eval") if run.get("evaluate", False) else run.get("batch_size_train")
    return attach_feature_cache(datasets, model, os.path.abspath(os.path.expanduser(root)), device,
                                autocast_dtype=task.amp_dtype if amp else None, batch_size=batch_size or 16,
                                num_workers=run.get("num_workers", 0))


def build_runner(args, config_cls=Config):
    """Config, process group, seeds, logging, task, datasets, model and runner, as LAVIS does."""
    import_user_modules(args.cfg_path)
    cfg = config_cls(args)
    if getattr(args, "resume", None):
        with open_dict(cfg.run_cfg):
            cfg.run_cfg.resume_ckpt_path = args.resume
    init_distributed_mode(cfg.run_cfg)
    setup_seeds(cfg)
    # After the process group exists, so that only rank 0 logs at INFO.
    setup_logger()
    set_num_threads(cfg.run_cfg)
    cfg.pretty_print()
    job_id = make_job_id()

    task = tasks.setup_task(cfg)
    datasets = task.build_datasets(cfg)
    model = task.build_model(cfg)
    datasets = with_frozen_feature_cache(cfg, task, model, datasets)

    runner_name = cfg.run_cfg.get("runner", "runner_gated")
    runner_cls = registry.get_runner_class(runner_name)
    if runner_cls is None:
        raise KeyError(
            f"run.runner {runner_name!r} is not registered; known: {registry.list_runners()}"
        )
    return runner_cls(cfg=cfg, job_id=job_id, task=task, model=model, datasets=datasets)


def main(argv=None):
    build_runner(parse_train_args(argv)).train()


if __name__ == "__main__":
    main()

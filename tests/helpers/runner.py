"""GatedRunner on the toy components: a run config, a runner built in the test process, its checkpoints,
and a way to make it die mid-epoch."""

import argparse
from pathlib import Path

import torch
import yaml

from helpers import toy_components  # noqa: F401  (registers the toy model, builder and task)
from lavis_gated.runners.run_setup import build_runner

ITERS_PER_EPOCH = 4  # 16 train samples, batch 4


def write_config(tmp_path, name="cfg.yaml", **run):
    cfg = {
        "model": {"arch": "toy_runner_model", "model_type": "default", "dim": 4},
        "datasets": {"toy_runner_data": {"data_type": "images", "n": 16}},
        "run": {
            "task": "toy_runner_task",
            "runner": "runner_gated",
            "lr_sched": "linear_warmup_cosine_lr",
            "init_lr": 0.05,
            "min_lr": 0.01,
            "weight_decay": 0.0,
            "max_epoch": 1,
            "batch_size_train": 4,
            "batch_size_eval": 8,
            "num_workers": 0,
            "seed": 42,
            "device": "cpu",
            "output_dir": str(tmp_path / "output"),
            "train_splits": ["train"],
            "valid_splits": ["val"],
            "test_splits": ["test"],
            **run,
        },
    }
    path = tmp_path / name
    tmp_path.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def make_runner(tmp_path, **run):
    return build_runner(argparse.Namespace(cfg_path=str(write_config(tmp_path, **run)), options=[]))


def checkpoint_files(output_dir):
    return sorted(p.name for p in Path(output_dir).iterdir() if p.is_file() and p.name != "log.txt")


def load_checkpoint(runner, name):
    return torch.load(runner.output_dir / name, map_location="cpu", weights_only=True)


def record_saves(runner):
    saves = []
    save = runner._save_checkpoint

    def recording_save(cur_epoch, is_best=False):
        saves.append((cur_epoch, is_best))
        save(cur_epoch, is_best)

    runner._save_checkpoint = recording_save
    return saves


class Interrupted(Exception):
    pass


def interrupt_at(runner, stop_epoch):
    """Make `runner` die in the middle of `stop_epoch`, after it changed the model and data position."""
    train_epoch = runner.train_epoch

    def dying_train_epoch(epoch):
        if epoch == stop_epoch:
            next(runner.train_loader)
            runner.unwrap_dist_model(runner.model).head.weight.data.add_(1.0)
            raise Interrupted
        return train_epoch(epoch)

    runner.train_epoch = dying_train_epoch

"""GatedRunner on CPU: best-checkpoint choice, atomic saves, checked reloads, torchrun with gloo."""

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
# LAVIS installs a package named `tests`, so the toy module is imported by its own name.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import toy_components  # noqa: E402,F401  (registers the toy model, builder and task)
from test_end_to_end import SUBPROCESS_TIMEOUT  # noqa: E402

from lavis_gated.checkpoint_keys import CheckpointMismatchError  # noqa: E402
from lavis_gated.runners.run_setup import build_runner  # noqa: E402
from lavis_gated.runners.runner_gated import GatedRunner  # noqa: E402

FROZEN_KEYS = {"frozen.weight", "frozen.bias"}
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


@pytest.fixture(autouse=True)
def single_process(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    "schedule, best_epochs",
    [
        ([0.0, -1.0, 0.5, 0.2], [0, 2]),  # a first agg of 0 must still save
        ([-3.0, -2.0, -2.0, -5.0], [0, 1]),  # never positive; ties do not replace
    ],
)
def test_best_checkpoint_follows_improvements_only(tmp_path, schedule, best_epochs):
    runner = make_runner(tmp_path, max_epoch=len(schedule), toy_agg_schedule=schedule)
    assert isinstance(runner, GatedRunner)
    saves = record_saves(runner)

    runner.train()

    assert saves == [(e, True) for e in best_epochs]
    assert checkpoint_files(runner.output_dir) == ["checkpoint_best.pth"]
    ckpt = load_checkpoint(runner, "checkpoint_best.pth")
    assert ckpt["epoch"] == best_epochs[-1]
    assert set(ckpt["model"]) == {"head.weight", "head.bias", "train_steps", "tag._extra_state"}
    assert ckpt["model"]["train_steps"].item() == (best_epochs[-1] + 1) * ITERS_PER_EPOCH
    assert ckpt["model"]["tag._extra_state"] == {"version": 1}
    # The test phase reloaded the best weights, although later epochs trained on.
    head = runner.unwrap_dist_model(runner.model).head
    assert torch.equal(head.weight, ckpt["model"]["head.weight"])
    assert runner.task.cuda_enabled_seen and not any(runner.task.cuda_enabled_seen)


def test_non_finite_validation_never_becomes_best(tmp_path):
    runner = make_runner(tmp_path, max_epoch=3, toy_agg_schedule=[float("nan"), 0.5, float("nan")])
    saves = record_saves(runner)
    runner.train()
    assert saves == [(1, True)]
    assert load_checkpoint(runner, "checkpoint_best.pth")["best_agg_metric"] == 0.5


def test_a_run_without_any_finite_validation_says_so(tmp_path):
    runner = make_runner(tmp_path, max_epoch=2, save_last=True, toy_agg_schedule=[float("nan"), float("inf")])
    with pytest.raises(
        RuntimeError, match=r"No validation .* finite agg_metrics.*diverged.*checkpoint_last\.pth"
    ):
        runner.train()
    assert checkpoint_files(runner.output_dir) == ["checkpoint_last.pth"]


def test_without_validation_keeps_last_epoch_and_tests_current_model(tmp_path):
    runner = make_runner(tmp_path, max_epoch=2, valid_splits=[])
    saves = record_saves(runner)

    runner.train()

    assert saves == [(0, False), (1, False)]
    assert checkpoint_files(runner.output_dir) == ["checkpoint_last.pth"]
    ckpt = load_checkpoint(runner, "checkpoint_last.pth")
    assert ckpt["epoch"] == 1
    assert not FROZEN_KEYS & set(ckpt["model"])


def test_save_last_writes_both(tmp_path):
    runner = make_runner(tmp_path, max_epoch=2, toy_agg_schedule=[1.0, 0.0], save_last=True)
    runner.train()

    assert checkpoint_files(runner.output_dir) == ["checkpoint_best.pth", "checkpoint_last.pth"]
    assert load_checkpoint(runner, "checkpoint_best.pth")["epoch"] == 0
    assert load_checkpoint(runner, "checkpoint_last.pth")["epoch"] == 1


def test_evaluate_only_writes_no_checkpoint(tmp_path):
    runner = make_runner(tmp_path, max_epoch=3, toy_agg_schedule=[1.0], evaluate=True)
    runner.train()

    assert checkpoint_files(runner.output_dir) == []
    assert runner.unwrap_dist_model(runner.model).train_steps.item() == 0


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    runner = make_runner(tmp_path, toy_agg_schedule=[1.0])
    runner.train()
    best = runner.output_dir / "checkpoint_best.pth"
    before = best.read_bytes()

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(RuntimeError, match="checkpoint_best.pth"):
        runner._save_checkpoint(7, is_best=True)

    assert best.read_bytes() == before
    assert checkpoint_files(runner.output_dir) == ["checkpoint_best.pth"]


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda sd: sd.update(bogus=torch.zeros(1)), "bogus"),
        (lambda sd: sd.pop("head.weight"), "head.weight"),
    ],
)
def test_reload_rejects_checkpoint_that_does_not_fit(tmp_path, tamper, message):
    runner = make_runner(tmp_path, toy_agg_schedule=[1.0])
    runner.train()
    best = runner.output_dir / "checkpoint_best.pth"
    ckpt = load_checkpoint(runner, "checkpoint_best.pth")
    tamper(ckpt["model"])
    torch.save(ckpt, best)

    with pytest.raises(
        CheckpointMismatchError, match=f"checkpoint_best.pth does not fit the model: .*{message}"
    ):
        runner._reload_best_model(runner.unwrap_dist_model(runner.model))


def test_two_runners_in_one_process(tmp_path):
    first = make_runner(tmp_path / "a", toy_agg_schedule=[1.0])
    first.train()
    second = make_runner(tmp_path / "b", toy_agg_schedule=[1.0])
    second.train()

    assert second.output_dir != first.output_dir
    for runner in (first, second):
        assert checkpoint_files(runner.output_dir) == ["checkpoint_best.pth"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes_with_gloo(tmp_path):
    cfg = write_config(tmp_path, max_epoch=2, imports=["toy_components"])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID"):
        env.pop(var, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "lavis_gated/train.py",
        "--cfg-path",
        str(cfg),
    ]

    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
    )

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    job_dirs = list((tmp_path / "output").iterdir())
    assert len(job_dirs) == 1  # both ranks agreed on the job id
    assert checkpoint_files(job_dirs[0]) == ["checkpoint_best.pth"]


def test_repeated_options_accumulate():
    from lavis_gated.train import parse_args

    args = parse_args(["--cfg-path", "x.yaml", "--options", "a=1", "b=2", "--options", "c=3"])
    assert args.options == ["a=1", "b=2", "c=3"]

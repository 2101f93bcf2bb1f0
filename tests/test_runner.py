"""GatedRunner on CPU: best-checkpoint choice, atomic saves, checked reloads, torchrun with gloo."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.runner import (
    ITERS_PER_EPOCH,
    checkpoint_files,
    load_checkpoint,
    make_runner,
    record_saves,
    write_config,
)
from helpers.runs import REPO, SUBPROCESS_TIMEOUT, free_port

from lavis_gated.common.checkpoints import CheckpointMismatchError
from lavis_gated.runners.runner_gated import GatedRunner

# tests/, on the launched processes' PYTHONPATH for run.imports' helpers.toy_components (LAVIS installs a
# package named `tests`, so helpers are imported as `helpers.*`, never as `tests.helpers.*`)
HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.usefixtures("single_process")  # no torchrun variables in the test process

FROZEN_KEYS = {"frozen.weight", "frozen.bias"}


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


def test_torchrun_two_cpu_processes_with_gloo(tmp_path):
    cfg = write_config(tmp_path, max_epoch=2, imports=["helpers.toy_components"])
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
        f"--master_port={free_port()}",
        "lavis_gated/train.py",
        "--cfg-path",
        str(cfg),
    ]

    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    job_dirs = list((tmp_path / "output").iterdir())
    assert len(job_dirs) == 1  # both ranks agreed on the job id
    assert checkpoint_files(job_dirs[0]) == ["checkpoint_best.pth"]


def test_repeated_options_accumulate():
    from lavis_gated.train import parse_args

    args = parse_args(["--cfg-path", "x.yaml", "--options", "a=1", "b=2", "--options", "c=3"])
    assert args.options == ["a=1", "b=2", "c=3"]

"""Resume: a run stopped mid-epoch (even by SIGKILL) goes on to the same end as one that never stopped."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers.checkpoints import CodePayload
from helpers.runner import (
    ITERS_PER_EPOCH,
    Interrupted,
    checkpoint_files,
    interrupt_at,
    load_checkpoint,
    make_runner,
    write_config,
)
from helpers.runs import REPO, SUBPROCESS_TIMEOUT
from lavis.common.registry import registry
from omegaconf import OmegaConf

from lavis_gated.common import checkpoints
from lavis_gated.common.run_log import is_config, read_log
from lavis_gated.models.checkpoint_loading import STYLE_VOCAB_KEY
from lavis_gated.styles import StyleVocabulary
from lavis_gated.tasks.style_captioning import StyleCaptioningTask

MAX_EPOCH = 4
SCHEDULE = [0.9, 0.5, 0.1, 0.05]  # the best is epoch 0; a resume that forgot it would save epoch 2 as best
pytestmark = pytest.mark.usefixtures("single_process")  # no torchrun variables in the test process


def train_log(run_dir):
    return [
        json.loads(line)
        for line in (run_dir / "log.txt").read_text().splitlines()
        if line.startswith('{"train_')
    ]


def trainable_state(runner):
    return {k: v.clone() for k, v in runner.unwrap_dist_model(runner.model).state_dict().items()}


def test_resume_continues_exactly_where_an_uninterrupted_run_goes(tmp_path):
    config = dict(max_epoch=MAX_EPOCH, save_last=True, toy_agg_schedule=SCHEDULE)
    reference = make_runner(tmp_path / "reference", **config)
    reference.train()

    stopped = make_runner(tmp_path / "stopped", **config)
    stopped.unwrap_dist_model(stopped.model).tag.version = 2  # extra state the resumed model must get back
    interrupt_at(stopped, stop_epoch=2)
    with pytest.raises(Interrupted):
        stopped.train()
    run_dir = stopped.output_dir
    best_bytes = (run_dir / "checkpoint_best.pth").read_bytes()

    resumed = make_runner(
        tmp_path / "stopped", **config, resume_ckpt_path=str(run_dir / "checkpoint_last.pth")
    )
    assert resumed.output_dir == run_dir
    resumed.train()

    assert resumed.start_epoch == 2
    assert (resumed.best_agg_metric, resumed.best_epoch) == (0.9, 0)
    assert (run_dir / "checkpoint_best.pth").read_bytes() == best_bytes, "a worse epoch replaced the best"
    assert resumed.unwrap_dist_model(resumed.model).tag.version == 2
    assert [entry["train_epoch"] for entry in train_log(run_dir)] == list(range(MAX_EPOCH))

    last, reference_last = (
        load_checkpoint(resumed, "checkpoint_last.pth"),
        load_checkpoint(reference, "checkpoint_last.pth"),
    )
    assert last["epoch"] == reference_last["epoch"] == MAX_EPOCH - 1
    assert last["model"]["train_steps"].item() == MAX_EPOCH * ITERS_PER_EPOCH
    for key in ("head.weight", "head.bias"):
        assert torch.equal(last["model"][key], reference_last["model"][key]), key
    for moments, expected in zip(
        last["optimizer"]["state"].values(), reference_last["optimizer"]["state"].values()
    ):
        assert all(torch.equal(moments[k], expected[k]) for k in ("step", "exp_avg", "exp_avg_sq"))


def test_log_shows_each_epoch_once_after_repeated_resumes(tmp_path):
    config = dict(max_epoch=MAX_EPOCH, save_last=True, toy_agg_schedule=SCHEDULE)
    first = make_runner(tmp_path, **config)
    first.train()
    run_dir = first.output_dir
    for _ in range(4):  # each resume from the best (epoch 0) runs epochs 1-3 again
        make_runner(tmp_path, **config, resume_ckpt_path=str(run_dir / "checkpoint_best.pth")).train()

    entries = read_log(run_dir / "log.txt")
    assert sum(is_config(e) for e in entries) == 1 and is_config(entries[0])
    assert [e["train_epoch"] for e in entries if "train_loss" in e] == list(range(MAX_EPOCH))
    assert [e["val_epoch"] for e in entries if "val_agg_metrics" in e] == list(range(MAX_EPOCH))
    assert [e["resumed_at_epoch"] for e in entries if "resumed_at_epoch" in e] == [
        1
    ]  # the last resume's note


def test_resume_restores_optimizer_and_scaler(tmp_path):
    first = make_runner(tmp_path, save_last=True, toy_agg_schedule=[1.0])
    first._scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    first.train()

    checkpoint = str(first.output_dir / "checkpoint_last.pth")
    second = make_runner(tmp_path, max_epoch=1, resume_ckpt_path=checkpoint)
    second._scaler = torch.amp.GradScaler("cpu")
    second._load_checkpoint(checkpoint)

    assert second.scaler.get_scale() == 1024.0
    saved = first.optimizer.state_dict()["state"]
    restored = second.optimizer.state_dict()["state"]
    assert saved.keys() == restored.keys() and len(saved) == 2
    for key in saved:
        assert torch.equal(saved[key]["exp_avg"], restored[key]["exp_avg"])


def test_resume_refuses_a_checkpoint_with_code(tmp_path):
    marker = tmp_path / "payload_ran"
    first = make_runner(tmp_path, save_last=True, toy_agg_schedule=[1.0])
    first.train()
    checkpoint = first.output_dir / "checkpoint_last.pth"
    state = torch.load(checkpoint, weights_only=True)
    state["scaler"] = CodePayload(marker)
    torch.save(state, checkpoint)

    resumed = make_runner(tmp_path, max_epoch=2, resume_ckpt_path=str(checkpoint))
    with pytest.raises(checkpoints.UnsafeCheckpointError, match="checkpoint_last.pth"):
        resumed.train()
    assert not marker.exists()


def test_resume_keeps_the_checkpoints_style_vocabulary(tmp_path, caplog):
    saved_names = ["cubism", "impressionism", "pop art"]
    checkpoint = tmp_path / "checkpoint_last.pth"
    torch.save({"model": {STYLE_VOCAB_KEY: {"names": saved_names}}}, checkpoint)
    task = StyleCaptioningTask()
    task.train_style_vocabulary = StyleVocabulary(["cubism", "pop art"])  # the train split changed since
    model_cfg = OmegaConf.load(registry.get_model_class("blip2_opt_gated").default_config_path("tiny")).model
    model_cfg.image_size = 32
    cfg = SimpleNamespace(
        model_cfg=model_cfg, run_cfg=OmegaConf.create({"resume_ckpt_path": str(checkpoint)})
    )

    model = task.build_model(cfg)

    assert model.vocabulary.names == saved_names
    assert model.state_dict()[STYLE_VOCAB_KEY]["names"] == saved_names
    assert "its style vocabulary ['cubism', 'impressionism', 'pop art'] is kept" in caplog.text


def wait_for_line(process, wanted, timeout):
    """Read the process's output until a line equals `wanted`; the output so far."""
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.strip() == wanted:
                return lines
    finally:
        timer.cancel()
    raise AssertionError(f"never printed {wanted!r}:\n" + "".join(lines[-50:]))


def test_sigkill_mid_epoch_then_resume_finishes_the_same_epochs(tmp_path):
    cfg = write_config(
        tmp_path,
        max_epoch=MAX_EPOCH,
        save_last=True,
        toy_agg_schedule=SCHEDULE,
        toy_step_seconds=0.2,
        imports=["helpers.toy_components"],
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))
    train = [sys.executable, "lavis_gated/train.py", "--cfg-path", str(cfg)]

    first = subprocess.Popen(
        train, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for_line(first, "toy step 2 1", timeout=SUBPROCESS_TIMEOUT)  # epoch 2 is half done
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    (run_dir,) = (tmp_path / "output").iterdir()
    assert torch.load(run_dir / "checkpoint_last.pth", weights_only=True)["epoch"] == 1

    resumed = subprocess.run(
        [*train, "--resume", str(run_dir / "checkpoint_last.pth")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "toy step 2 0" in resumed.stdout and "toy step 1 " not in resumed.stdout

    assert list((tmp_path / "output").iterdir()) == [run_dir]
    assert checkpoint_files(run_dir) == ["checkpoint_best.pth", "checkpoint_last.pth"]
    last = checkpoints.load_checkpoint(run_dir / "checkpoint_last.pth")
    assert last["epoch"] == MAX_EPOCH - 1
    assert last["model"]["train_steps"].item() == MAX_EPOCH * ITERS_PER_EPOCH
    assert len(train_log(run_dir)) == MAX_EPOCH
    best = checkpoints.load_checkpoint(run_dir / "checkpoint_best.pth")
    assert (best["epoch"], best["best_agg_metric"]) == (0, 0.9)
    fresh = make_runner(tmp_path / "fresh")  # loads it into a new model, checking every key
    model = fresh._load_model_state(fresh.unwrap_dist_model(fresh.model), best, "checkpoint_best.pth")
    assert torch.equal(model.head.weight, best["model"]["head.weight"])

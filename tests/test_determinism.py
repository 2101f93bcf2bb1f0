"""Reproducibility on CPU: the same config twice gives identical metrics, and 1 process with batch 2b gives
the validation metrics of 2 processes with batch b (tiny model, synthetic data, one epoch)."""

import argparse
import json
import math
import os
import subprocess
import sys

import pytest
from helpers.result_tolerance import assert_same_results
from helpers.runs import REPO, SUBPROCESS_TIMEOUT, free_port, write_config

from lavis_gated.datasets.synthetic_artquest import generate
from lavis_gated.runners.run_setup import build_runner

GLOBAL_BATCH = 8
# style_probe_share 0.5: the probe's rows are drawn by a hash of each row's id, so one process and two probe
# the same rows of a global batch
RUN = dict(max_epoch=1, warmup_steps=1, batch_size_eval=16, test_splits=[], seed=7, style_probe_share=0.5)
pytestmark = pytest.mark.usefixtures("single_process")  # no torchrun variables in the test process


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate(str(root), {"train": 4, "val": 1, "test": 1}, seed=5)  # 48 train and 12 val questions
    return root


def train_in_this_process(tmp_path, data, name):
    cfg = write_config(tmp_path, data, name, batch_size_train=GLOBAL_BATCH, **RUN)
    runner = build_runner(argparse.Namespace(cfg_path=str(cfg), options=[]))
    runner.train()
    return runner.output_dir


def validation(run_dir):
    metrics = json.loads((run_dir / "val_metrics.json").read_text())
    predictions = json.loads((run_dir / "val_predictions.json").read_text())
    return metrics, predictions


def numbers(metrics, prefix=""):
    """Flat {key: value} of every number in a metrics dict (by-type tables included)."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(numbers(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)):
            flat[prefix + key] = value
    return flat


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory, data):
    return train_in_this_process(tmp_path_factory.mktemp("one"), data, "one")


def test_same_seed_and_config_give_the_same_metrics(tmp_path, data, one_process_run):
    again = train_in_this_process(tmp_path, data, "again")

    first_metrics, first_predictions = validation(one_process_run)
    second_metrics, second_predictions = validation(again)
    assert_same_results(second_metrics, first_metrics)
    assert_same_results(second_predictions, first_predictions)
    assert first_metrics["epoch"] == 0 and first_metrics["num_samples"] == 12


def test_one_and_two_processes_give_the_same_validation_metrics(tmp_path, data, one_process_run):
    cfg = write_config(tmp_path, data, "two", batch_size_train=GLOBAL_BATCH // 2, **RUN)
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
            "lavis_gated/train.py",
            "--cfg-path",
            str(cfg),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "distributed init (rank 1, world 2, gloo)" in result.stdout + result.stderr
    (two_process_run,) = (tmp_path / "two").iterdir()

    one_metrics, one_predictions = validation(one_process_run)
    two_metrics, two_predictions = validation(two_process_run)
    # the global batches are the same, but their sums are reduced in another order: floats within 1e-5
    one, two = numbers(one_metrics), numbers(two_metrics)
    assert one.keys() == two.keys()
    for key in one:
        assert math.isclose(one[key], two[key], rel_tol=0, abs_tol=1e-5), (key, one[key], two[key])
    assert [p["prediction"] for p in one_predictions] == [p["prediction"] for p in two_predictions]
    assert one_metrics["lm_loss"] < 6.0  # trained: an untrained tiny model scores about ln(599) = 6.4

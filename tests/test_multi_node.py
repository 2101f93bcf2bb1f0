"""Beyond one machine, rehearsed on one host: two torchrun launchers of one process each (`--nnodes=2`,
c10d rendezvous), and two SLURM-style tasks started without torchrun, end as one launcher of two processes
does: the same best epochs, the same answers, metrics within result_tolerance's tolerance.

Each run trains the tiny model for two epochs on a few synthetic images, in real subprocesses.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers.result_tolerance import assert_same_results
from helpers.runs import REPO, SUBPROCESS_TIMEOUT, free_port, only_run_dir, write_config

EPOCHS = 2
QUESTIONS = 6 * 2 * 2  # styles x images x questions of the small test split


def launch(commands, envs):
    """Start every command at once (they rendezvous with each other), wait for all; stdout of each."""
    base = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    processes = [
        subprocess.Popen(
            [sys.executable, *command],
            cwd=REPO,
            env={**base, **env},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for command, env in zip(commands, envs)
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=SUBPROCESS_TIMEOUT)[0])
    finally:
        for process in processes:
            process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-6000:]
    return outputs


def train_command(cfg):
    return ["lavis_gated/train.py", "--cfg-path", str(cfg)]


@pytest.fixture(scope="module")
def one_node(tmp_path_factory, small_data):
    root = tmp_path_factory.mktemp("one_node")
    cfg = write_config(root, small_data, "run", max_epoch=EPOCHS, warmup_steps=1)
    launch(
        [
            [
                "-m",
                "torch.distributed.run",
                "--nproc_per_node=2",
                f"--master_port={free_port()}",
                *train_command(cfg),
            ]
        ],
        [{}],
    )
    return only_run_dir(root / "run")


def outcome(run_dir):
    """What a run ends with: which epochs became best, the best checkpoint's epoch, metrics and answers."""
    log = [
        json.loads(line)
        for line in (run_dir / "log.txt").read_text().splitlines()
        if line.startswith('{"val_')
    ]
    checkpoint = torch.load(run_dir / "checkpoint_best.pth", map_location="cpu", weights_only=True)
    return {
        "best_epochs": [(entry["val_epoch"], entry["val_best_epoch"]) for entry in log],
        "checkpoint_epoch": checkpoint["epoch"],
        "predictions": [
            (p["question_id"], p["prediction"])
            for p in json.loads((run_dir / "test_predictions.json").read_text())
        ],
        "metrics": {
            split: json.loads((run_dir / f"{split}_metrics.json").read_text()) for split in ("val", "test")
        },
    }


def assert_same_outcome(run_dir, reference_dir):
    got, expected = outcome(run_dir), outcome(reference_dir)
    assert got["best_epochs"] == expected["best_epochs"] and len(got["best_epochs"]) == EPOCHS
    assert got["checkpoint_epoch"] == expected["checkpoint_epoch"]
    assert got["predictions"] == expected["predictions"]
    assert_same_results(got["metrics"], expected["metrics"])


def test_one_node_two_processes_evaluate_every_question_once(one_node):
    predictions = json.loads((one_node / "test_predictions.json").read_text())
    ids = [p["question_id"] for p in predictions]
    assert len(ids) == len(set(ids)) == QUESTIONS


def test_two_nodes_on_one_host_end_like_one_node(tmp_path, small_data, one_node):
    cfg = write_config(tmp_path, small_data, "run", max_epoch=EPOCHS, warmup_steps=1)
    rendezvous = [
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint=127.0.0.1:{free_port()}",
        "--rdzv_id=two-nodes",
    ]
    outputs = launch([[*rendezvous, f"--node_rank={rank}", *train_command(cfg)] for rank in (0, 1)], [{}, {}])
    assert "distributed init (rank 1, world 2, gloo)" in "".join(outputs)
    assert_same_outcome(only_run_dir(tmp_path / "run"), one_node)


def test_slurm_tasks_end_like_one_node(tmp_path, small_data, one_node):
    """What `srun python lavis_gated/train.py ...` gives each task: SLURM's variables and MASTER_ADDR/PORT."""
    cfg = write_config(tmp_path, small_data, "run", max_epoch=EPOCHS, warmup_steps=1)
    port = str(free_port())
    envs = [
        {
            "SLURM_PROCID": str(rank),
            "SLURM_LOCALID": str(rank),
            "SLURM_NTASKS": "2",
            "SLURM_NTASKS_PER_NODE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
        }
        for rank in (0, 1)
    ]
    outputs = launch([train_command(cfg)] * 2, envs)
    assert "distributed init (rank 1, world 2, gloo)" in "".join(outputs)
    assert_same_outcome(only_run_dir(tmp_path / "run"), one_node)

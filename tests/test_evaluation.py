"""Evaluating a checkpoint as eval.sh does (torchrun + evaluate.py): the files a user reads, 1 vs 2
processes, and plain BLIP-2 (gating.type none) through the same command and compare.py.

Trains two tiny checkpoints for one epoch on a few synthetic images; each step is a real subprocess.
"""

import json

import matplotlib.image
import pytest
from helpers.metric_keys import TASK_METRIC_KEYS
from helpers.result_tolerance import assert_same_results
from helpers.runs import SUBPROCESS_TIMEOUT, free_port, only_run_dir, run, write_config

from lavis_gated.datasets.synthetic_artquest import generate

METRIC_KEYS = TASK_METRIC_KEYS | {"epoch"}
PREDICTION_KEYS = {"question_id", "image", "question", "prediction", "answer", "question_type", "style"}
TEST_QUESTIONS = 6 * 2 * 2  # styles x images x questions
EVAL_BATCH = 5  # 24 questions: batches of 5, 5, 5, 5, 4; with two processes rank 0 gets three, rank 1 two


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    data = root / "data"
    generate(str(data), {"train": 4, "val": 2, "test": 2}, seed=5)
    return root, data


def train(workspace, name, *options):
    root, data = workspace
    cfg = write_config(root, data, name, max_epoch=1, warmup_steps=1)
    run(
        [
            "lavis_gated/train.py",
            "--cfg-path",
            str(cfg),
            "--options",
            f"run.batch_size_eval={EVAL_BATCH}",
            *options,
        ],
        timeout=SUBPROCESS_TIMEOUT,
    )
    return only_run_dir(root / name)


@pytest.fixture(scope="module")
def gated_run(workspace):
    return train(workspace, "gated")


@pytest.fixture(scope="module")
def plain_run(workspace):
    return train(workspace, "plain", "model.gating.type=none")


def evaluate(workspace, name, checkpoint, nproc):
    """The command eval.sh runs; returns (run folder, stdout)."""
    root, data = workspace
    cfg = write_config(root, data, name, base="demo_eval.yaml")
    result = run(
        [
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={nproc}",
            f"--master_port={free_port()}",
            "lavis_gated/evaluate.py",
            "--cfg-path",
            str(cfg),
            "--checkpoint",
            str(checkpoint),
            "--split",
            "test",
            "--options",
            f"run.batch_size_eval={EVAL_BATCH}",
        ],
        timeout=SUBPROCESS_TIMEOUT,
    )
    return only_run_dir(root / name), result.stdout


def read(path):
    return json.loads(path.read_text())


def assert_picture_shows_data(path):
    pixels = matplotlib.image.imread(str(path))
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400, pixels.shape
    assert pixels[..., :3].std() > 0.05, f"{path.name} is blank"


def test_one_and_two_processes_evaluate_alike(workspace, gated_run):
    one, stdout = evaluate(workspace, "eval1", gated_run / "checkpoint_best.pth", nproc=1)
    two, _ = evaluate(workspace, "eval2", gated_run / "checkpoint_best.pth", nproc=2)

    metrics = read(one / "test_metrics.json")
    assert set(metrics) == METRIC_KEYS
    assert metrics["num_samples"] == TEST_QUESTIONS
    predictions = read(one / "test_predictions.json")
    ids = [p["question_id"] for p in predictions]
    assert len(ids) == len(set(ids)) == TEST_QUESTIONS
    assert all(PREDICTION_KEYS <= set(p) for p in predictions)

    # the same questions, counts and answers; floats within result_tolerance's stated tolerance
    assert_same_results(read(two / "test_metrics.json"), metrics)
    assert_same_results(read(two / "test_predictions.json"), predictions)
    assert [p["prediction"] for p in read(two / "test_predictions.json")] == [
        p["prediction"] for p in predictions
    ]
    assert_same_results(read(two / "test_modulation.json"), read(one / "test_modulation.json"))

    modulation = read(one / "test_modulation.json")
    assert modulation["gating_type"] == "film" and modulation["qformer_layers"] == [0, 2]
    assert sum(s["count"] for s in modulation["styles"].values()) == TEST_QUESTIONS
    for picture in ("training_curves.png", "test_modulation.png"):
        assert_picture_shows_data(one / picture)
    assert "em[style]" in stdout and f"metrics: {one / 'test_metrics.json'}" in stdout


def test_plain_blip2_checkpoint_evaluates_as_trained_and_compares(workspace, gated_run, plain_run, capsys):
    plain, _ = evaluate(workspace, "eval_plain", plain_run / "checkpoint_best.pth", nproc=1)

    # the model settings came from the checkpoint: no modulation, and the training run's own test numbers
    assert not (plain / "test_modulation.json").exists()
    evaluated, trained = read(plain / "test_metrics.json"), read(plain_run / "test_metrics.json")
    for key in ("lm_loss", "style_kl", "style_head_acc", "em", "em_by_type", "rougeL"):
        assert_same_results(evaluated[key], trained[key], where=key)

    from lavis_gated.reports import compare

    compare.main([str(gated_run), str(plain)])
    out = capsys.readouterr().out
    assert "(gating.type film)" in out and "(gating.type none)" in out
    em_row = next(line.split() for line in out.splitlines() if line.startswith("em "))
    gated_em, plain_em = read(gated_run / "test_metrics.json")["em"], evaluated["em"]
    assert em_row[1:] == [f"{gated_em:.4f}", f"{plain_em:.4f}", f"{plain_em - gated_em:.4f}"]

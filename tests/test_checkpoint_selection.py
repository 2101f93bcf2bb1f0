"""run.select_by decides agg_metrics, and the runner replaces checkpoint_best.pth exactly when it improves.

The real StyleCaptioningTask computes the metrics from scripted per-epoch validation records; the toy
model and data of toy_components keep the runner cheap.
"""

import json

import pytest
from helpers.runner import load_checkpoint, make_runner, record_saves
from lavis.common.registry import registry
from lavis.tasks.base_task import BaseTask

from lavis_gated.tasks.style_captioning import StyleCaptioningTask

pytestmark = pytest.mark.usefixtures("single_process")  # no torchrun variables in the test process

# Per validation epoch: how each of four answers comes out, and the LM loss of every record.
# "exact": prediction == answer; "vqa": right only after VQA normalisation ("the circle"); "wrong".
SCHEDULE = [
    (["exact", "exact", "wrong", "wrong"], 2.0),  # em .50  vqa .50  loss 2.0
    (["exact", "wrong", "wrong", "wrong"], 1.0),  # em .25  vqa .25  loss 1.0  (loss improves)
    (["exact", "exact", "exact", "wrong"], 1.5),  # em .75  vqa .75  loss 1.5  (em, vqa improve)
    (["exact", "exact", "exact", "vqa"], 0.5),  # em .75  vqa 1.0  loss 0.5  (em ties; vqa, loss improve)
    (["exact", "exact", "vqa", "vqa"], 0.5),  # em .50  vqa 1.0  loss 0.5  (ties or worse everywhere)
]
PREDICTION = {"exact": "circle", "vqa": "the circle", "wrong": "square"}


def scripted_records(epoch):
    outcomes, loss = SCHEDULE[min(epoch, len(SCHEDULE) - 1)]
    return [
        {
            "question_id": str(i),
            "image": f"{i}.png",
            "question": "which shape?",
            "prediction": PREDICTION[o],
            "answer": "circle",
            "question_type": "shape",
            "style": "",
            "style_source": "",
            "style_id": -1,
            "probe_row": False,
            "probe_prediction": -1,
            "style_head_prediction": 0,
            "style_hits": 0,
            "style_positions": 1,
            "lm_loss": loss,
            "style_name_loss": 0.0,
            "style_kl": 0.0,
            "style_ce": 0.0,
            "lm_tokens": 2,
        }
        for i, o in enumerate(outcomes)
    ]


@registry.register_task("toy_runner_scripted_captioning")
class ScriptedCaptioningTask(StyleCaptioningTask):
    """StyleCaptioningTask whose evaluation returns SCHEDULE's records instead of running the toy model."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.evaluations = 0

    # the toy data and model have no style labels or vocabulary
    build_datasets = BaseTask.build_datasets
    build_model = BaseTask.build_model

    def train_epoch(self, epoch, model, data_loader, optimizer, lr_scheduler, **kwargs):
        for i in range(len(data_loader)):
            lr_scheduler.step(cur_epoch=epoch, cur_step=i)
            model(next(data_loader))["loss"].backward()
            optimizer.step()
            optimizer.zero_grad()
        return {"epoch": epoch}

    def before_evaluation(self, model, dataset, **kwargs):
        pass

    def evaluation(self, model, data_loader, cuda_enabled=True):
        self.evaluations += 1
        return scripted_records(self.evaluations - 1)


@pytest.mark.parametrize(
    "select_by, best_epochs",
    [
        ("loss", [0, 1, 3]),
        ("em", [0, 2]),
        ("vqa_acc", [0, 2, 3]),
    ],
)
def test_best_checkpoint_is_replaced_exactly_when_the_chosen_metric_improves(
    tmp_path, select_by, best_epochs
):
    runner = make_runner(
        tmp_path, task="toy_runner_scripted_captioning", max_epoch=len(SCHEDULE), select_by=select_by
    )
    saves = record_saves(runner)

    runner.train()

    assert saves == [(epoch, True) for epoch in best_epochs]
    assert load_checkpoint(runner, "checkpoint_best.pth")["epoch"] == best_epochs[-1]
    last_val = json.loads((runner.output_dir / "val_metrics.json").read_text())
    assert last_val["epoch"] == len(SCHEDULE) - 1
    expected_agg = 1 / (1 + 0.5) if select_by == "loss" else last_val[select_by]
    assert last_val["agg_metrics"] == pytest.approx(expected_agg)


@pytest.mark.parametrize("select_by, best_epoch", [("em", 2), ("loss", 3)])
def test_the_best_epochs_validation_files_are_kept_beside_the_latest(tmp_path, select_by, best_epoch):
    """Finding 10: val_metrics.json and val_predictions.json are the last epoch's, checkpoint_best.pth another
    epoch's; the best epoch's are kept as val_best_*.json, and the test metrics name the epoch they test."""
    runner = make_runner(
        tmp_path, task="toy_runner_scripted_captioning", max_epoch=len(SCHEDULE), select_by=select_by
    )
    runner.train()
    folder = runner.output_dir
    best = json.loads((folder / "val_best_metrics.json").read_text())
    assert best["epoch"] == best_epoch == load_checkpoint(runner, "checkpoint_best.pth")["epoch"]
    assert best["agg_metrics"] == pytest.approx(runner.best_agg_metric)
    assert json.loads((folder / "val_metrics.json").read_text())["epoch"] == len(SCHEDULE) - 1
    predictions = json.loads((folder / "val_best_predictions.json").read_text())
    assert [p["prediction"] for p in predictions] == [r["prediction"] for r in scripted_records(best_epoch)]
    assert (folder / "result" / f"val_epoch{best_epoch}_predictions.json").read_text() == (
        folder / "val_best_predictions.json"
    ).read_text()
    test = json.loads((folder / "test_metrics.json").read_text())
    assert test["epoch"] == "best" and test["checkpoint_epoch"] == best_epoch


@pytest.mark.parametrize("select_by", ["loss", "em"])
def test_a_nan_validation_loss_never_becomes_best(tmp_path, monkeypatch, select_by):
    """Epoch 1's weights blew up (init_lr 1e30 does that): NaN loss, yet answers still right."""
    scripted = scripted_records

    def blown_up_at_epoch_1(epoch):
        rows = scripted(epoch)
        return [dict(r, lm_loss=float("nan")) for r in rows] if epoch == 1 else rows

    monkeypatch.setitem(globals(), "scripted_records", blown_up_at_epoch_1)
    runner = make_runner(tmp_path, task="toy_runner_scripted_captioning", max_epoch=2, select_by=select_by)
    saves = record_saves(runner)
    runner.train()
    assert saves == [(0, True)]
    log = (runner.output_dir / "log.txt").read_text()
    assert '"val_agg_metrics": null' in log and '"val_epoch": 1' in log


def test_default_selection_is_the_loss_as_a_positive_larger_is_better_value():
    task = StyleCaptioningTask()
    assert task.select_by == "loss"
    losses = [task.metrics(scripted_records(e))["agg_metrics"] for e in range(len(SCHEDULE))]
    assert losses == pytest.approx([1 / 3, 1 / 2, 1 / 2.5, 1 / 1.5, 1 / 1.5])
    assert all(0 < v <= 1 for v in losses)

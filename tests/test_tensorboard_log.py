"""TensorBoard events of a run, read back with tensorboard's EventAccumulator: the toy runner's validations,
pictures, the off switch, a run that fails, a resumed run; the modulation summary per layer. (The real task's
training curves and modulation are checked on the ablation's runs in test_ablate.py.)"""

import json

import pytest
from helpers.runner import Interrupted, interrupt_at, make_runner
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lavis_gated.runners.tensorboard_log import TensorBoardLog, modulation_by_layer, parameter_tag, tag

pytestmark = pytest.mark.usefixtures("single_process")  # no torchrun variables in the test process


def events_of(run_dir):
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def scalars(events, name):
    return [(e.step, pytest.approx(e.value)) for e in events.Scalars(name)]


def test_validations_test_phase_and_pictures(tmp_path):
    runner = make_runner(tmp_path, max_epoch=3, toy_agg_schedule=[0.1, 0.3, 0.2])
    runner.train()
    events = events_of(runner.output_dir)
    # each validation at its epoch's last step (4 steps an epoch); the test phase at the run's last step
    assert scalars(events, "val/agg_metrics") == [(4, 0.1), (8, 0.3), (12, 0.2)]
    assert [e.step for e in events.Scalars("test/agg_metrics")] == [12]
    assert "val/best_epoch" not in events.Tags()["scalars"]
    (picture,) = events.Images("pictures/training_curves")
    assert picture.step == 12 and picture.width > 400
    assert runner.tensorboard.writer is None  # closed


def test_switched_off(tmp_path):
    runner = make_runner(tmp_path, max_epoch=1, tensorboard=False)
    runner.train()
    assert not (runner.output_dir / "tensorboard").exists()


def test_a_failing_run_closes_its_events_and_a_resumed_one_replaces_the_rerun_epochs(tmp_path):
    config = dict(max_epoch=3, save_last=True, toy_agg_schedule=[0.9, 0.5, 0.1])
    stopped = make_runner(tmp_path, **config)
    interrupt_at(stopped, stop_epoch=2)
    with pytest.raises(Interrupted):
        stopped.train()
    assert stopped.tensorboard.writer is None
    events = events_of(stopped.output_dir)
    assert scalars(events, "val/agg_metrics") == [(4, 0.9), (8, 0.5)]
    assert not events.Tags()["images"]  # pictures only for a finished run

    # resumed from the best checkpoint (epoch 0): epoch 1 runs again, and its first validation is purged
    resumed = make_runner(
        tmp_path, **config, resume_ckpt_path=str(stopped.output_dir / "checkpoint_best.pth")
    )
    resumed.train()
    assert resumed.start_epoch == 1 and resumed.output_dir == stopped.output_dir
    assert [step for step, _ in scalars(events_of(resumed.output_dir), "val/agg_metrics")] == [4, 8, 12]


def test_tags_and_modulation_summary(tmp_path):
    assert tag("val", "em[pop art]") == "val/em/pop_art"
    assert (
        parameter_tag("|gamma_k| (K scale)") == "gamma_k"
        and parameter_tag("|tanh g_v| (V gate)") == "tanh_g_v"
    )
    summary = {
        "gating_type": "gate",
        "parameters": ["|tanh g_k| (K gate)", "|tanh g_v| (V gate)"],
        "qformer_layers": [0, 2],
        # (layers, parameters, heads) per style; style b's mean counts as much as a's despite its count
        "styles": {
            "a": {"count": 9, "mean": [[[0.1, 0.3], [1.0, 1.0]], [[0.0, 0.0], [0.2, 0.2]]]},
            "b": {"count": 1, "mean": [[[0.5, 0.7], [0.0, 0.0]], [[0.0, 0.4], [0.2, 0.2]]]},
        },
    }
    assert modulation_by_layer(summary) == pytest.approx(
        {
            ("|tanh g_k| (K gate)", 0): 0.4,
            ("|tanh g_v| (V gate)", 0): 0.5,
            ("|tanh g_k| (K gate)", 2): 0.1,
            ("|tanh g_v| (V gate)", 2): 0.2,
        }
    )

    path = tmp_path / "val_modulation.json"
    path.write_text(json.dumps(summary))
    log = TensorBoardLog(str(tmp_path / "tensorboard"))
    log.modulation("val", 7, str(path))
    log.modulation("val", 8, str(tmp_path / "absent.json"))  # gating none writes no summary: nothing logged
    log.evaluation("val", 7, {"em": 0.5, "em_by_type": {"style": 1.0}, "agg_metrics": None, "epoch": 3})
    log.close()
    events = events_of(tmp_path)
    assert scalars(events, "modulation_val/tanh_g_k/layer0") == [(7, 0.4)]
    assert scalars(events, "modulation_val/tanh_g_v/layer2") == [(7, 0.2)]
    assert sorted(t for t in events.Tags()["scalars"] if t.startswith("val/")) == ["val/em", "val/em/style"]
    TensorBoardLog().evaluation("val", 1, {"em": 1.0})  # disabled: does nothing, writes nothing

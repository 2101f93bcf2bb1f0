"""Pictures: log.txt parsing, the per-style modulation summary, and PNGs that show the data."""

import json

import matplotlib.image
import numpy as np
import pytest

from lavis_gated.common.run_log import logged_config, read_log
from lavis_gated.reports import plots
from lavis_gated.reports.modulation_figure import cell_text, deviation_from_mean, style_modulation_figure
from lavis_gated.reports.tables import epoch_summary
from lavis_gated.tasks.evaluation import summarise_modulation

CONFIG = {
    "model": {"arch": "blip2_opt_gated", "gating": {"type": "film"}},
    "run": {"select_by": "em"},
    "datasets": {},
}
TRAIN = [
    {
        "train_epoch": e,
        "train_lr": "0.0010",
        "train_loss": f"{3 - e:.4f}",
        "train_lm_loss": f"{2 - e / 2:.4f}",
        "train_style_kl": "0.5000",
    }
    for e in range(3)
]
VAL = [
    {
        "val_loss": 2.5 - e / 2,
        "val_lm_loss": 1.5,
        "val_em": em,
        "val_em_by_type": {"style": em},
        "val_agg_metrics": em,
        "val_epoch": e,
        "val_best_epoch": 1,
    }
    for e, em in enumerate([0.2, 0.6, 0.5])
]


def write_log(path, config, *entries):
    """As LAVIS's runner writes log.txt: the config as indented JSON, then one JSON line per stats."""
    with open(path, "w") as f:
        f.write(json.dumps(config, indent=4) + "\n")
        for entry in entries:
            f.write(json.dumps(entry) + "\n")


def assert_shows_data(path):
    pixels = matplotlib.image.imread(str(path))
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert pixels[..., :3].std() > 0.05, f"{path} is blank"


def test_epoch_history_reads_train_and_validation_epochs(tmp_path):
    write_log(
        tmp_path / "log.txt",
        CONFIG,
        TRAIN[0],
        VAL[0],
        TRAIN[1],
        VAL[1],
        TRAIN[2],
        VAL[2],
        {"test_em": 0.4, "test_agg_metrics": 0.4, "test_epoch": "best"},
    )
    entries = read_log(tmp_path / "log.txt")
    assert logged_config(entries) == CONFIG
    train, evaluations = plots.epoch_history(entries)
    assert [(t["epoch"], t["loss"], t["lm_loss"]) for t in train] == [
        (0, 3.0, 2.0),
        (1, 2.0, 1.5),
        (2, 1.0, 1.0),
    ]
    assert [(v["split"], v["epoch"], v["loss"], v["agg_metrics"]) for v in evaluations] == [
        ("val", 0, 2.5, 0.2),
        ("val", 1, 2.0, 0.6),
        ("val", 2, 1.5, 0.5),
    ]  # the "best" test entry is no epoch


def test_train_epochs_without_an_epoch_key_are_numbered_in_order(tmp_path):
    old = [{k: v for k, v in t.items() if k != "train_epoch"} for t in TRAIN]
    write_log(tmp_path / "log.txt", CONFIG, *old)
    train, _ = plots.epoch_history(read_log(tmp_path / "log.txt"))
    assert [t["epoch"] for t in train] == [0, 1, 2]


def test_not_a_log_names_the_file(tmp_path):
    (tmp_path / "log.txt").write_text('{"run": {}}\nnot json\n')
    with pytest.raises(ValueError, match="log.txt"):
        read_log(tmp_path / "log.txt")


def test_evaluation_folder_draws_the_curves_of_the_checkpoint_it_evaluated(tmp_path):
    training, evaluation = tmp_path / "train" / "job1", tmp_path / "eval" / "job2"
    training.mkdir(parents=True)
    evaluation.mkdir(parents=True)
    write_log(training / "log.txt", CONFIG, *TRAIN, *VAL)
    evaluated = {
        **CONFIG,
        "model": {
            **CONFIG["model"],
            "load_finetuned": True,
            "finetuned": str(training / "checkpoint_best.pth"),
        },
    }
    write_log(evaluation / "log.txt", evaluated)
    assert plots.training_log_of(str(training)) == str(training / "log.txt")
    assert plots.training_log_of(str(evaluation)) == str(training / "log.txt")
    assert plots.training_log_of(str(tmp_path)) is None  # no log.txt at all


def test_summarise_modulation_by_hand():
    records = [
        {"style": "Pop_Art", "modulation": [[[1.0, 2.0]], [[0.0, 4.0]]]},  # (L=2, P=1, H=2)
        {"style": "pop art", "modulation": [[[3.0, 2.0]], [[2.0, 0.0]]]},
        {"style": "", "modulation": [[[5.0, 5.0]], [[5.0, 5.0]]]},
    ]
    summary = summarise_modulation(records, gating_type="gate", qformer_layers=[0, 2])
    assert summary == {
        "gating_type": "gate",
        "parameters": ["|tanh g_k| (K gate)", "|tanh g_v| (V gate)"],
        "qformer_layers": [0, 2],
        "styles": {
            "(no style)": {"count": 1, "mean": [[[5.0, 5.0]], [[5.0, 5.0]]]},
            "pop art": {"count": 2, "mean": [[[2.0, 2.0]], [[1.0, 2.0]]]},
        },
    }


def test_draw_run_writes_both_pictures(tmp_path):
    write_log(tmp_path / "log.txt", CONFIG, *TRAIN, *VAL)
    records = [
        {
            "style": style,
            "modulation": [[[0.1 * h + i + p for h in range(4)] for p in range(3)] for i in range(2)],
        }
        for style in ("cubism", "pop art", "ukiyo e")
    ]
    (tmp_path / "test_modulation.json").write_text(json.dumps(summarise_modulation(records, "film", [0, 2])))

    written = plots.draw_run(str(tmp_path))

    assert sorted(written) == [str(tmp_path / "test_modulation.png"), str(tmp_path / "training_curves.png")]
    for path in written:
        assert_shows_data(path)
    assert not list(tmp_path.glob("*.tmp"))


def test_deviation_from_the_mean_over_styles_by_hand():
    means = [[[1.0, 2.0]], [[3.0, 6.0]], [[5.0, 7.0]]]  # (S=3, L=1, H=2)
    np.testing.assert_allclose(deviation_from_mean(means), [[[-2.0, -3.0]], [[0.0, 1.0]], [[2.0, 2.0]]])


def test_modulation_picture_shows_each_style_deviation_beside_its_strength():
    """Strengths that differ per head far more than per style: the deviation panel shows the style
    differences (centred on 0), the absolute panel the strengths; every colour bar is labelled."""
    records = [
        {
            "style": style,
            "modulation": [[[10.0 * h + 0.01 * s * (h + p) for h in range(4)] for p in range(3)]] * 2,
        }
        for s, style in enumerate(("cubism", "pop art", "ukiyo e"))
    ]
    summary = summarise_modulation(records, "film", [0, 2])
    means = np.array([summary["styles"][s]["mean"] for s in summary["styles"]])  # (3, 2, 3, 4)

    figure = style_modulation_figure(summary)

    images = [image for ax in figure.axes for image in ax.images]
    assert len(images) == 2 * 3  # per parameter: deviation, absolute
    for p in range(3):
        deviation, absolute = images[2 * p], images[2 * p + 1]
        np.testing.assert_allclose(absolute.get_array(), means[:, :, p, :].reshape(3, 8))
        expected = (means - means.mean(0))[:, :, p, :].reshape(3, 8)
        np.testing.assert_allclose(deviation.get_array(), expected, atol=1e-12)
        low, high = deviation.get_clim()
        assert low == -high == pytest.approx(-np.abs(expected).max())
    labels = [image.colorbar.ax.get_ylabel() for image in images]
    assert labels[0].startswith("strength - mean over styles") and labels[1].startswith("mean modulation")
    assert all(labels) and "|gamma_k|" in labels[0]


def test_cell_text_never_writes_minus_zero_and_keeps_tiny_deviations_readable():
    assert [cell_text(v, True, 1.0) for v in (0.123, -0.001, -0.5)] == ["+0.12", "0.00", "-0.50"]
    assert cell_text(0.004, False, 1.0) == "0.00" and cell_text(1.5, False, 2.0) == "1.50"
    assert cell_text(-2.04e-5, True, 3e-5) == "-2.0e-05"


def test_draw_run_of_a_missing_folder():
    with pytest.raises(FileNotFoundError, match="nowhere"):
        plots.draw_run("nowhere")


def test_epoch_summary_is_one_line_with_every_part():
    line = epoch_summary(
        3,
        {"epoch": 3, "loss": "1.5000", "lm_loss": "1.2500", "lr": "0.0010"},
        "val",
        {"loss": 2.0, "lm_loss": 1.75, "style_kl": 0.5, "em": 0.625, "vqa_acc": 0.75, "agg_metrics": 0.625},
        "em",
    )
    assert line == (
        "epoch 3 | train loss 1.5000 lm 1.2500 | val loss 2.0000 lm 1.7500 kl 0.5000 em 0.6250 "
        "vqa_acc 0.7500 | agg_metrics 0.6250 (select_by em)"
    )

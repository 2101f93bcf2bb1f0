"""Checks at load and build time that turn silent wrong results and raw errors into messages naming the key,
file or row: run values (epochs, batch sizes, learning rates, output_dir), train images reused in val/test,
and the smaller data and model gaps (case-only name differences, answers repeated in another case, a missing
question_type column, a model.style_names that the checkpoint's vocabulary replaces)."""

import argparse
import csv
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from lavis.common.config import Config
from lavis.common.registry import registry
from omegaconf import OmegaConf
from PIL import Image

import lavis_gated  # noqa: F401  (registers the builder, model and task)
from lavis_gated.runners.run_setup import check_config
from lavis_gated.tasks import checks

REPO = Path(__file__).resolve().parent.parent
COLUMNS = ["question_id", "image", "question", "answer", "question_type", "style"]


# ---- run values, checked when the config is loaded -------------------------------------------------------


def load(tmp_path, *options, output_dir=None):
    """The demo config as train.py loads it, checked by run_setup.check_config (nothing is built)."""
    output = output_dir if output_dir is not None else tmp_path / "runs"
    args = argparse.Namespace(
        cfg_path=str(REPO / "projects" / "gated" / "demo.yaml"),
        options=[f"run.output_dir={output}", *options],
    )
    cfg = Config(args)
    check_config(cfg)
    return cfg


@pytest.mark.parametrize(
    "option, message",
    [
        ("run.min_lr=-0.01", "run.min_lr is -0.01; it must be a finite number of at least 0"),
        ("run.init_lr=-0.001", "run.init_lr is -0.001; it must be a finite number of at least 0"),
        ("run.warmup_lr=-1e-05", "run.warmup_lr is -1e-05; it must be a finite number of at least 0"),
        ("run.min_lr=0.1", "run.min_lr is 0.1, above run.init_lr 0.003"),
        ("run.max_epoch=0", "run.max_epoch is 0; it must be a whole number of at least 1"),
        ("run.batch_size_train=0", "run.batch_size_train is 0; it must be a whole number of at least 1"),
        ("run.batch_size_eval=-4", "run.batch_size_eval is -4; it must be a whole number of at least 1"),
        ("run.accum_grad_iters=0", "run.accum_grad_iters is 0; it must be a whole number of at least 1"),
    ],
)
def test_run_values_that_cannot_work_are_refused_at_load(tmp_path, option, message):
    with pytest.raises(ValueError) as err:
        load(tmp_path, option)
    assert message in str(err.value)
    assert not (tmp_path / "runs").exists() or not os.listdir(tmp_path / "runs")  # no empty run folder


def test_good_values_pass_and_evaluation_needs_no_epochs(tmp_path):
    load(tmp_path)
    load(tmp_path, "run.evaluate=True", "run.max_epoch=0", "run.min_lr=0", "run.warmup_lr=0")
    assert (tmp_path / "runs").is_dir()


def test_output_dir_must_be_a_writable_folder(tmp_path):
    a_file = tmp_path / "runs.txt"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match=rf"run.output_dir is '{a_file}': {a_file} is a file, not a folder"):
        load(tmp_path, output_dir=a_file)
    under_a_file = a_file / "demo"
    with pytest.raises(
        ValueError, match=r"run.output_dir is '.*runs.txt/demo': .* is not a folder this process"
    ):
        load(tmp_path, output_dir=under_a_file)

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        target = locked / "runs"
        if os.access(locked, os.W_OK):  # root writes anywhere: use a location no process may write to
            target = Path("/sys/lavis-gated-runs")
            if os.access("/sys", os.W_OK) and not _read_only("/sys"):
                pytest.skip("no unwritable location to test with")
        with pytest.raises(
            ValueError, match=rf"run.output_dir is '{target}': .* is not a folder this process"
        ):
            load(tmp_path, output_dir=target)
    finally:
        locked.chmod(0o755)


def _read_only(path):
    try:
        os.mkdir(os.path.join(path, "lavis-gated-probe"))
    except OSError:
        return True
    os.rmdir(os.path.join(path, "lavis-gated-probe"))
    return False


# ---- data: splits sharing images, and the smaller gaps --------------------------------------------------


def save_image(path, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)


def write_split(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


def build(tmp_path, splits, **settings):
    cfg = OmegaConf.create(
        {
            "data_type": "images",
            "vis_processor": {"eval": {"name": "blip_image_eval", "image_size": 16}},
            "text_processor": {"eval": {"name": "blip_question"}},
            "build_info": {
                "annotations": {split: {"storage": str(path)} for split, path in splits.items()},
                "images": {"storage": str(tmp_path / "images")},
            },
            **settings,
        }
    )
    cfg.vis_processor.train = cfg.vis_processor.eval
    cfg.text_processor.train = cfg.text_processor.eval
    return registry.get_builder_class("artquest")(cfg).build_datasets()


def rows_for(split, images, question="Who painted this artwork?"):
    return [
        [f"{split}-{i}", image, question, "Francisco Goya", "artist", "romanticism"]
        for i, image in enumerate(images)
    ]


def leaky_splits(tmp_path):
    for i, name in enumerate(["t1.jpg", "t2.jpg", "t3.jpg", "v1.jpg"]):
        save_image(tmp_path / "images" / name, seed=i)
    train = write_split(tmp_path / "train.csv", rows_for("train", ["t1.jpg", "t2.jpg", "t3.jpg"]))
    val_rows = rows_for("val", ["v1.jpg", "t2.jpg", "t3.jpg"])
    val_rows[2][2] = "Which school is this artwork from?"  # t3: the image again, with another question
    val = write_split(tmp_path / "val.csv", val_rows)
    return train, val


def test_val_images_shared_with_train_are_an_error_with_counts_and_lines(tmp_path):
    train, val = leaky_splits(tmp_path)
    with pytest.raises(ValueError) as err:
        build(tmp_path, {"train": train, "val": val})
    message = str(err.value)
    assert (
        f"val ({val}) shares 2 images (2 rows) and 1 (image, question) pairs (1 rows) with train ({train})"
        in message
    )
    assert "first: line 3 (t2.jpg) = train line 3, line 4 (t3.jpg) = train line 4" in message
    assert "datasets.<name>.split_overlap: warning" in message


def test_split_overlap_warning_and_the_image_question_key(tmp_path, caplog):
    train, val = leaky_splits(tmp_path)
    datasets = build(tmp_path, {"train": train, "val": val}, split_overlap="warning")
    assert len(datasets["val"]) == 3 and "val (" in caplog.text and "shares 2 images" in caplog.text
    # with image_question only the same question on the same image counts: t2's row
    with pytest.raises(
        ValueError, match=r"share \(image, question\) pairs.*first: line 3 \(t2.jpg\) = train line 3"
    ):
        build(tmp_path, {"train": train, "val": val}, split_overlap_key="image_question")


def test_a_name_that_differs_from_the_file_only_by_case_gets_a_hint(tmp_path):
    save_image(tmp_path / "images" / "Goya_Saturn.JPG")
    split = write_split(tmp_path / "val.csv", rows_for("val", ["goya_saturn.jpg"]))
    with pytest.raises(FileNotFoundError) as err:
        build(tmp_path, {"val": split})
    assert "goya_saturn.jpg (missing; Goya_Saturn.JPG exists: image names are case-sensitive; line 2)" in str(
        err.value
    )


def test_a_row_repeated_with_the_answer_in_another_case_is_flagged(tmp_path):
    save_image(tmp_path / "images" / "a.jpg")
    rows = rows_for("val", ["a.jpg", "a.jpg"])
    rows[1][3] = "FRANCISCO GOYA "
    split = write_split(tmp_path / "val.csv", rows)
    with pytest.raises(
        ValueError, match=r"1 rows repeat an earlier row .*letter case aside.*line 3 repeats line 2"
    ):
        build(tmp_path, {"val": split})


def test_rows_without_a_question_type_carry_the_style_terms():
    """A train file without a question_type column (every type "") once stopped the run with a message about
    run.style_question_types. The style terms now come from the style probe, which asks every labelled row
    the same style question, so such rows are covered like any other, and nothing refuses them."""
    from helpers.tiny_model import STYLES, build_tiny

    model = build_tiny()
    rows = [
        {"question_type": "", "style": STYLES[0], "answer": "Francisco Goya"},
        {"question_type": "", "style": STYLES[1], "answer": "1800-1850"},
        {"question_type": "", "style": "", "answer": "oil on canvas"},
    ]
    covered = checks.term_coverage(model, rows)
    assert covered["style_name_loss"] == covered["style_kl"] == covered["style_ce"] == 2
    assert covered["lm_loss"] == 3


def test_an_explicit_style_names_replaced_by_the_checkpoints_is_said(caplog):
    model_cls = registry.get_model_class("blip2_opt_gated")
    tiny = OmegaConf.load(model_cls.default_config_path("tiny")).model
    assert checks.explicit_style_names(tiny, model_cls) is None  # the model type's own list
    mine = OmegaConf.merge(tiny, {"style_names": ["baroque", "rococo"]})
    explicit = checks.explicit_style_names(mine, model_cls)
    assert explicit == ["baroque", "rococo"]
    caplog.set_level(logging.WARNING)
    assert not checks.warn_replaced_style_names(explicit, ["baroque", "rococo"], "the checkpoint x.pth")
    assert checks.warn_replaced_style_names(explicit, ["cubism", "pop art"], "the checkpoint x.pth")
    assert (
        "model.style_names (2 names: ['baroque', 'rococo']) is not used: the style vocabulary comes from the "
        "checkpoint x.pth (2 names: ['cubism', 'pop art'])" in caplog.text
    )

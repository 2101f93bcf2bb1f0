"""The synthetic data with real-looking answers (capitalised, hyphenated, bracketed, as ArtQuest writes them)
and WikiArt-style labels, and one training run on it: the style terms read the answers' own forms."""

import csv
import json

import torch
from helpers.runs import only_run_dir, run, write_config
from omegaconf import OmegaConf

from lavis_gated.datasets.synthetic_artquest import ARTQUEST_TEMPLATES, REAL_LOOKING, STYLES, generate, main
from lavis_gated.styles import StyleVocabulary, mentions_style

FORMS = {"Impressionism", "Cubism", "Pop Art", "Pointillism", "Ukiyo-e", "Minimalism (Modern)"}


def rows_of(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_real_looking_answers_and_labels(tmp_path):
    paths = generate(
        str(tmp_path / "real"), {"train": 2, "val": 1, "test": 1}, seed=1, size=32, real_looking=True
    )
    plain = generate(str(tmp_path / "plain"), {"train": 2, "val": 1, "test": 1}, seed=1, size=32)
    rows = rows_of(paths["train"])
    assert {r["answer"] for r in rows if r["question_type"] == "style"} == FORMS
    assert {r["answer"] for r in rows if r["question_type"] == "shape"} == {"Circle", "Square", "Triangle"}
    labels = {r["style"] for r in rows}
    assert labels == {label for _, label in REAL_LOOKING.values()} and "Ukiyo_e" in labels
    # a label and its answer name the same style, though spelt differently
    names = StyleVocabulary.from_labels(labels).names
    assert all(mentions_style(r["answer"], names) for r in rows if r["question_type"] == "style")
    assert len(names) == len(STYLES)
    # the same paintings as the default data
    assert [r["image"] for r in rows] == [r["image"] for r in rows_of(plain["train"])]


def test_the_command_line_flag(tmp_path):
    main(
        [
            "--output-dir",
            str(tmp_path),
            "--train",
            "1",
            "--val",
            "1",
            "--test",
            "1",
            "--size",
            "32",
            "--real-looking",
        ]
    )
    assert "Ukiyo-e" in {r["answer"] for r in rows_of(tmp_path / "artquest_val.csv")}


def test_training_on_real_looking_answers_uses_their_forms(tmp_path):
    data = tmp_path / "data"
    generate(str(data), {"train": 4, "val": 2, "test": 2}, seed=3, real_looking=True)
    cfg = write_config(tmp_path, data, "real", max_epoch=1, warmup_steps=1, max_len=16)
    output = run(["lavis_gated/train.py", "--cfg-path", str(cfg)])
    log = output.stdout + output.stderr
    assert "train rows each loss term covers: lm_loss 48 (100.0%), style_name_loss 48 (100.0%), " in log
    run_dir = only_run_dir(tmp_path / "real")
    state = torch.load(run_dir / "checkpoint_best.pth", map_location="cpu", weights_only=True)["model"]
    carried = state["style_vocabulary._extra_state"]
    assert set(carried["forms"]) == FORMS  # the answers' forms, not "ukiyo e" or "minimalism modern"
    assert carried["names"] == sorted(carried["names"]) and "ukiyo e" in carried["names"]
    best = (run_dir / "val_best_metrics.json").read_text()
    assert '"num_probe_rows": 24' in best and '"epoch": 0' in best  # every labelled row is probed


def test_artquest_question_set_has_no_style_question_and_a_style_table(tmp_path):
    paths = generate(str(tmp_path), {"train": 1, "val": 1, "test": 1}, seed=2, question_set="artquest")
    rows = rows_of(paths["train"])
    assert {r["question_type"] for r in rows} == set(ARTQUEST_TEMPLATES)  # artist ... title, no style
    assert "style" not in rows[0]
    assert not any(mentions_style(r["answer"], list(STYLES)) for r in rows)  # no answer names a style
    table = rows_of(paths["style_table"])
    assert {r["source"] for r in table} == {"metadata"}
    assert {r["image"] for r in table} >= {r["image"] for r in rows}
    assert {r["style"] for r in table} == {label for _, label in REAL_LOOKING.values()}


def test_training_on_artquest_question_types_carries_the_style_terms_on_the_probe(tmp_path):
    """No question asks for a style and the labels come from a style table: the probe still gives the style
    terms every train row, and val and test report its accuracy and KL as numbers."""
    data = tmp_path / "data"
    paths = generate(str(data), {"train": 2, "val": 1, "test": 1}, seed=3, question_set="artquest")
    cfg_path = write_config(
        tmp_path, data, "types", base="demo_artquest_types.yaml", max_epoch=1, warmup_steps=1
    )
    cfg = OmegaConf.load(cfg_path)
    cfg.datasets.artquest.style_table.storage = paths["style_table"]
    OmegaConf.save(cfg, cfg_path)
    output = run(["lavis_gated/train.py", "--cfg-path", str(cfg_path)])
    log = output.stdout + output.stderr
    assert "train rows each loss term covers: lm_loss 72 (100.0%), style_name_loss 72 (100.0%), " in log
    run_dir = only_run_dir(tmp_path / "types")
    for split in ("val", "test"):
        metrics = json.loads((run_dir / f"{split}_metrics.json").read_text())
        assert metrics["num_probe_rows"] == metrics["num_samples"] == 36
        assert isinstance(metrics["probe_style_acc"], float) and isinstance(metrics["style_kl"], float)
        assert metrics["style_label_source"] == "metadata" and metrics["style_answer_label_rate"] is None

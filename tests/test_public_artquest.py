"""The public ArtQuest layout end to end: CSVs with image, question, answer, question_type (no style column)
plus a style table train the tiny model; the train split's style vocabulary travels with the checkpoint to
evaluation and to load_model_and_preprocess, and a style seen only at evaluation is counted."""

import csv
import json
import subprocess
import sys

import pytest
import torch
from helpers.result_tolerance import assert_same_results
from helpers.runs import REPO, SUBPROCESS_TIMEOUT, only_run_dir, run
from lavis.common.registry import registry
from lavis.models import load_model_and_preprocess
from omegaconf import OmegaConf

from lavis_gated.datasets.synthetic_artquest import generate

PUBLIC_COLUMNS = ["image", "question", "answer", "question_type"]
EVAL_ONLY_STYLE = "minimalism"  # left out of the train split
TRAIN_STYLES = ["cubism", "impressionism", "pointillism", "pop art", "ukiyo e"]


def public_layout(root):
    """Synthetic data rewritten as the public release: split CSVs without style, and a separate
    painting -> movement table whose spellings need normalising."""
    generate(str(root), {"train": 3, "val": 1}, seed=7)
    spellings = {"pop art": "Pop_Art", "ukiyo-e": "Ukiyo-e", "cubism": " CUBISM "}
    table = {}
    for split in ("train", "val"):
        with open(root / f"artquest_{split}.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            table[row["image"]] = spellings.get(row["style"], row["style"])
        if split == "train":
            rows = [r for r in rows if r["style"] != EVAL_ONLY_STYLE]
        with open(root / f"public_{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=PUBLIC_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    with open(root / "painting_styles.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["painting", "movement"])
        writer.writerows(sorted(table.items()))


def project(tmp_path, root, name, base, style_table=True, **run_options):
    cfg = OmegaConf.load(REPO / "projects" / "gated" / base)
    data = cfg.datasets.artquest
    for split in data.build_info.annotations:
        data.build_info.annotations[split].storage = str(root / f"public_{split}.csv")
    data.build_info.images.storage = str(root / "images")
    if "test" in data.build_info.annotations:
        del data.build_info.annotations["test"]
    if style_table:
        data.style_table = {
            "storage": str(root / "painting_styles.csv"),
            "key": "painting",
            "style": "movement",
        }
    cfg.run.output_dir = str(tmp_path / name)
    cfg.run.test_splits = ["val"]
    cfg.run.update(run_options)
    path = tmp_path / f"{name}.yaml"
    OmegaConf.save(cfg, path)
    return path


@pytest.fixture(scope="module")
def public_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("public_artquest")
    public_layout(root)
    return root


def test_public_layout_without_style_source_fails_clearly(public_root, tmp_path):
    cfg = project(tmp_path, public_root, "nostyle", "demo.yaml", style_table=False)
    result = subprocess.run(
        [sys.executable, "lavis_gated/train.py", "--cfg-path", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode != 0
    assert f"{public_root / 'public_train.csv'}: no style source" in result.stderr
    assert "style_table.storage" in result.stderr and "e.g. 'school'" in result.stderr


def test_public_layout_with_style_table_trains_and_the_vocabulary_travels(public_root, tmp_path, monkeypatch):
    with open(public_root / "public_train.csv", encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == PUBLIC_COLUMNS  # exactly the public layout
    train_cfg = project(tmp_path, public_root, "train", "demo.yaml", max_epoch=1, warmup_steps=1)
    trained_output = run(["lavis_gated/train.py", "--cfg-path", str(train_cfg)])
    run_dir = only_run_dir(tmp_path / "train")
    checkpoint_path = run_dir / "checkpoint_best.pth"
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    assert checkpoint["model"]["style_vocabulary._extra_state"]["names"] == TRAIN_STYLES
    trained = json.loads((run_dir / "val_metrics.json").read_text())
    assert (
        trained["num_samples"] == 6 * 2 and trained["num_unknown_style"] == 2
    )  # minimalism: 1 image, 2 questions

    # evaluation in a fresh process takes the checkpoint's vocabulary (a different one would refuse to load)
    eval_cfg = project(tmp_path, public_root, "eval", "demo_eval.yaml")
    result = run(
        [
            "lavis_gated/evaluate.py",
            "--cfg-path",
            str(eval_cfg),
            "--options",
            "model.load_finetuned=True",
            f"model.finetuned={checkpoint_path}",
        ]
    )
    for output in (trained_output, result):
        assert (
            "artquest/val: 2 rows have styles not in the model's style vocabulary"
            in output.stdout + output.stderr
        )
    evaluated = json.loads((only_run_dir(tmp_path / "eval") / "val_metrics.json").read_text())
    assert evaluated["num_unknown_style"] == 2
    for key in ("lm_loss", "style_kl", "style_head_acc", "em"):
        assert_same_results(evaluated[key], trained[key], where=key)
    predictions = json.loads((only_run_dir(tmp_path / "eval") / "val_predictions.json").read_text())
    assert sorted({p["style"] for p in predictions if p["style_id"] < 0}) == [EVAL_ONLY_STYLE]

    # load_model_and_preprocess on a model type whose YAML names the checkpoint
    model_cls = registry.get_model_class("blip2_opt_gated")
    model_yaml = OmegaConf.load(model_cls.default_config_path("tiny"))
    model_yaml.model.load_finetuned = True
    model_yaml.model.finetuned = str(checkpoint_path)
    OmegaConf.save(model_yaml, tmp_path / "mine.yaml")
    monkeypatch.setitem(model_cls.PRETRAINED_MODEL_CONFIG_DICT, "mine", str(tmp_path / "mine.yaml"))
    model, vis_processors, _ = load_model_and_preprocess("blip2_opt_gated", model_type="mine", is_eval=True)
    assert model.vocabulary.names == TRAIN_STYLES
    state = model.state_dict()
    trainable = [k for k in checkpoint["model"] if k.startswith("style_head.")]
    assert trainable and all(torch.equal(state[k], checkpoint["model"][k]) for k in trainable)
    assert vis_processors["eval"] is not None

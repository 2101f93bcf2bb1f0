"""The product as users run it: train.py / evaluate.py / torchrun on the tiny model and synthetic data.

Each test launches the real entry points in subprocesses (tens of seconds each), on a few images.
"""

import json

import torch
from helpers.metric_keys import TASK_METRIC_KEYS
from helpers.result_tolerance import assert_same_results
from helpers.runs import only_run_dir, run, write_config

FROZEN_PREFIXES = ("visual_encoder.", "opt_model.", "style_encoder.cnn.")
BATCHNORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # buffers: LAVIS keeps them


def test_train_then_evaluate_in_a_fresh_process(tmp_path, small_data):
    train_cfg = write_config(tmp_path, small_data, "train", max_epoch=2, warmup_steps=1)
    trained_output = run(["lavis_gated/train.py", "--cfg-path", str(train_cfg)])
    assert "intra-op threads: " in trained_output.stdout + trained_output.stderr  # the choice is logged
    run_dir = only_run_dir(tmp_path / "train")

    checkpoints = sorted(p.name for p in run_dir.glob("checkpoint_*"))
    assert checkpoints == ["checkpoint_best.pth"]
    checkpoint = torch.load(run_dir / "checkpoint_best.pth", map_location="cpu", weights_only=True)
    frozen = [
        k for k in checkpoint["model"] if k.startswith(FROZEN_PREFIXES) and not k.endswith(BATCHNORM_BUFFERS)
    ]
    assert not frozen, "frozen weights were saved"
    assert checkpoint["model"]["style_vocabulary._extra_state"]["names"] == sorted(
        ["cubism", "impressionism", "minimalism", "pointillism", "pop art", "ukiyo e"]
    )

    trained = json.loads((run_dir / "test_metrics.json").read_text())
    assert TASK_METRIC_KEYS | {"epoch", "checkpoint_epoch"} == set(trained)
    assert trained["num_samples"] == 6 * 2 * 2
    assert set(trained["em_by_type"]) == {"shape", "style"}
    predictions = json.loads((run_dir / "test_predictions.json").read_text())
    assert len({p["question_id"] for p in predictions}) == trained["num_samples"]

    assert_checkpoint_loads_with_its_own_vocabulary(run_dir, small_data, predictions)

    eval_cfg = write_config(tmp_path, small_data, "eval", base="demo_eval.yaml")
    run(
        [
            "lavis_gated/evaluate.py",
            "--cfg-path",
            str(eval_cfg),
            "--options",
            "model.load_finetuned=True",
            f"model.finetuned={run_dir / 'checkpoint_best.pth'}",
        ]
    )
    evaluated = json.loads((only_run_dir(tmp_path / "eval") / "test_metrics.json").read_text())
    for key in ("lm_loss", "style_kl", "style_head_acc", "em", "em_by_type"):
        assert_same_results(evaluated[key], trained[key], where=key)


def assert_checkpoint_loads_with_its_own_vocabulary(run_dir, data, predictions):
    """What a user does after training: load the checkpoint through LAVIS's load_model_and_preprocess (its
    path is a model type), or into the tiny type with load_checkpoint; both answer as the run's own test
    did."""
    from lavis.common.registry import registry
    from lavis.models import load_model_and_preprocess
    from PIL import Image

    checkpoint = str(run_dir / "checkpoint_best.pth")
    first = predictions[0]
    model, vis, txt = load_model_and_preprocess("blip2_opt_gated", model_type=checkpoint, is_eval=True)
    assert model.vocabulary.names == [
        "cubism",
        "impressionism",
        "minimalism",
        "pointillism",
        "pop art",
        "ukiyo e",
    ]
    with Image.open(data / "images" / first["image"]) as image:
        samples = {
            "image": vis["eval"](image.convert("RGB")).unsqueeze(0),
            "text_input": txt["eval"](first["question"]),
        }
    assert model.predict_answers(samples, num_beams=1, max_len=6) == [first["prediction"]]

    tiny = registry.get_model_class("blip2_opt_gated").from_pretrained("tiny").eval()
    assert len(tiny.vocabulary) == 28
    tiny.load_checkpoint(checkpoint)
    assert tiny.vocabulary.names == model.vocabulary.names
    assert tiny.predict_answers(samples, num_beams=1, max_len=6) == [first["prediction"]]

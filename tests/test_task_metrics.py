"""StyleCaptioningTask: metrics() from hand-made per-sample records, loss_terms (batch_terms), the style
terms' coverage, config checks."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from helpers.metric_keys import COUNT_KEYS, FLOAT_METRIC_KEYS, TASK_METRIC_KEYS
from omegaconf import OmegaConf

from lavis_gated.configs.run_config import SELECT_BY
from lavis_gated.tasks.checks import check_coverage
from lavis_gated.tasks.losses import batch_terms, coverage, uncovered_terms
from lavis_gated.tasks.style_captioning import StyleCaptioningTask

WEIGHTS = {"lm_weight": 1.0, "style_name_weight": 0.5, "style_kl_weight": 0.25, "style_ce_weight": 2.0}


def record(
    qid,
    question_type,
    prediction,
    answer,
    style,
    style_id,
    probe_row,
    probe,
    head,
    hits,
    positions,
    lm_loss,
    style_name_loss,
    style_kl,
    style_ce,
    lm_tokens,
    source="column",
):
    """A record with exactly the keys valid_step produces."""
    return {
        "question_id": qid,
        "image": f"{qid}.png",
        "question": "q?",
        "prediction": prediction,
        "answer": answer,
        "question_type": question_type,
        "style": style,
        "style_source": source if style else "",
        "style_id": style_id,
        "probe_row": probe_row,
        "probe_prediction": probe,
        "style_head_prediction": head,
        "style_hits": hits,
        "style_positions": positions,
        "lm_loss": lm_loss,
        "style_name_loss": style_name_loss,
        "style_kl": style_kl,
        "style_ce": style_ce,
        "lm_tokens": lm_tokens,
    }


RECORDS = [
    # labelled style question, probed: the probe names the label; head right
    record("q1", "style", "Pop Art", "pop art", "pop art", 1, True, 1, 1, 1, 2, 1.0, 0.2, 0.4, 0.1, 2),
    # labelled style question, probed: the probe names another style; head wrong; answer a wrong style
    record("q2", "style", "pop art", "cubism", "cubism", 0, True, 1, 1, 0, 3, 2.0, 0.6, 0.8, 1.5, 3),
    # labelled shape question, probed (the probe reads every labelled row): probe right; head right
    record("q3", "shape", "circle", "square", "cubism", 0, True, 0, 0, 1, 1, 3.0, 0.4, 5.0, 0.3, 1),
    # style unknown to the vocabulary: counted as unknown, not probed
    record("q4", "style", "the baroque", "baroque", "baroque", -1, False, -1, 1, 0, 2, 2.0, 0.0, 0.0, 0.0, 2),
    # no style label at all: not "unknown"
    record("q5", "shape", "Two", "2", "", -1, False, -1, 0, 2, 2, 4.0, 0.0, 0.0, 0.0, 4),
]

LM_LOSS = (1.0 * 2 + 2.0 * 3 + 3.0 * 1 + 2.0 * 2 + 4.0 * 4) / (2 + 3 + 1 + 2 + 4)  # weighted by answer tokens
NAME_LOSS, KL = (0.2 + 0.6 + 0.4) / 3, (0.4 + 0.8 + 5.0) / 3
EXPECTED_LOSS = 1.0 * LM_LOSS + 0.5 * NAME_LOSS + 0.25 * KL + 2.0 * (1.9 / 3)


def make_task(**kwargs):
    settings = {
        **WEIGHTS,
        "style_question_types": ["style"],
        "caption_tokenizer": "words",
        "meteor": False,  # Java's METEOR is tested in test_caption_metrics
        **kwargs,
    }
    task = StyleCaptioningTask(**settings)
    task.style_names = ["cubism", "pop art"]
    return task


def test_metrics_every_number():
    task = make_task()
    task.style_names = ["cubism", "pop art", "square"]  # a vocabulary naming q3's reference "square" too
    m = task.metrics(RECORDS)
    assert m["num_samples"] == 5
    assert m["num_unknown_style"] == 1
    assert m["num_probe_rows"] == 3  # every labelled row, whatever its question
    assert m["style_label_source"] == "column"
    assert m["lm_loss"] == pytest.approx(31 / 12)  # all records, each weighted by its answer tokens
    assert m["style_name_loss"] == pytest.approx(NAME_LOSS)  # probed rows
    assert m["style_kl"] == pytest.approx(KL)  # probed rows
    assert m["style_ce"] == pytest.approx((0.1 + 1.5 + 0.3) / 3)  # labelled rows
    assert m["probe_style_acc"] == pytest.approx(2 / 3)  # q1 and q3 name their label first
    # style questions with a label: q1 names its label, q2 names pop art for a cubism painting (not a hit)
    assert m["style_answer_label_rate"] == pytest.approx(1 / 2)
    assert m["any_style_token_rate"] == pytest.approx((1 + 0 + 1 + 0 + 2) / (2 + 3 + 1 + 2 + 2))
    # any style counts here: q1 and q2 name a style (q2 the wrong one); q3 says circle, not square
    assert m["any_style_word_rate"] == pytest.approx(2 / 3)
    assert m["style_head_acc"] == pytest.approx(2 / 3)  # labelled rows
    assert m["loss"] == pytest.approx(EXPECTED_LOSS)
    assert m["em"] == pytest.approx(1 / 5)
    assert m["vqa_acc"] == pytest.approx(3 / 5)  # q1, "the baroque", "Two" = "2"
    assert m["em_by_type"] == pytest.approx({"shape": 0.0, "style": 1 / 3})
    assert m["vqa_acc_by_type"] == pytest.approx({"shape": 0.5, "style": 2 / 3})
    assert m["agg_metrics"] == pytest.approx(1.0 / (1.0 + EXPECTED_LOSS))
    assert m["caption_tokenizer"] == "words"
    assert set(m) == TASK_METRIC_KEYS


def test_metrics_against_cnn_made_labels_are_named_agreement_with_the_style_table():
    """Labels the style CNN made are no ground truth: accuracies against them say what they measure."""
    records = [dict(r, style_source="cnn") if r["style"] else r for r in RECORDS]
    m = make_task(select_by="style_head_acc").metrics(records)
    assert m["style_label_source"] == "cnn"
    assert "probe_style_acc" not in m and "style_head_acc" not in m
    assert m["probe_style_agreement_with_style_table"] == pytest.approx(2 / 3)
    assert m["style_head_agreement_with_style_table"] == pytest.approx(2 / 3)
    assert m["agg_metrics"] == pytest.approx(2 / 3)  # select_by reads the renamed key
    mixed = [dict(records[0], style_source="metadata_join"), *records[1:]]
    assert make_task().metrics(mixed)["style_label_source"] == "mixed: cnn, metadata_join"


def test_style_ce_is_reported_only_when_trained():
    assert "style_ce" not in make_task(style_ce_weight=0.0).metrics(RECORDS)
    assert "style_ce" in make_task(style_ce_weight=0.1).metrics(RECORDS)


@pytest.mark.parametrize(
    "select_by, expected",
    [
        ("loss", 1.0 / (1.0 + EXPECTED_LOSS)),
        ("em", 1 / 5),
        ("vqa_acc", 3 / 5),
        ("style_head_acc", 2 / 3),
        ("probe_style_acc", 2 / 3),
        ("style_answer_label_rate", 1 / 2),
    ],
)
def test_agg_metrics_follows_select_by(select_by, expected):
    assert make_task(select_by=select_by).metrics(RECORDS)["agg_metrics"] == pytest.approx(expected)


def test_loss_uses_the_task_weights():
    m = make_task(lm_weight=0.0, style_name_weight=0.0, style_kl_weight=1.0, style_ce_weight=0.0).metrics(
        RECORDS
    )
    assert m["loss"] == pytest.approx(KL)
    m = StyleCaptioningTask(caption_tokenizer="words", meteor=False).metrics(RECORDS)  # defaults: LM only
    assert m["loss"] == pytest.approx(LM_LOSS)


def test_metrics_are_json_plain_numbers():
    task = make_task()
    task.style_names = ["cubism", "pop art"]
    captions = [dict(r, question="", references=[r["answer"], "a painting"]) for r in RECORDS]  # caption rows
    m = task.metrics(RECORDS + [dict(r, question_id=f"c{i}") for i, r in enumerate(captions)])
    for key in COUNT_KEYS:
        assert isinstance(m[key], int), key
    for key in FLOAT_METRIC_KEYS - {"meteor", "caption_meteor", "caption_spice"}:  # computed where Java runs
        assert isinstance(m[key], float), key


def test_metrics_without_style_rows_or_labels_are_null_not_zero():
    """Finding 7: a style term that covers no row printed 0.0000, which reads as a perfect loss: now null."""
    records = [r for r in RECORDS if r["style_id"] < 0]
    m = make_task(select_by="probe_style_acc").metrics(records)
    assert m["num_samples"] == 2 and m["num_probe_rows"] == 0
    for key in ("style_name_loss", "style_kl", "style_ce", "probe_style_acc", "style_head_acc"):
        assert m[key] is None, key
    assert m["style_answer_label_rate"] is None and m["style_label_source"] is None
    assert m["loss"] == pytest.approx((2.0 * 2 + 4.0 * 4) / 6)  # terms without rows add nothing
    assert m["agg_metrics"] is None  # never selected as best on a metric it does not have
    assert json.loads(json.dumps(m))["style_kl"] is None  # null in the metrics JSON


def test_lm_loss_is_weighted_by_answer_tokens_as_in_training():
    """Finding 4: evaluation averaged the LM loss per sample, training per answer token."""
    records = [dict(RECORDS[0], lm_loss=1.0, lm_tokens=1), dict(RECORDS[1], lm_loss=4.0, lm_tokens=3)]
    assert make_task().metrics(records)["lm_loss"] == pytest.approx((1.0 + 12.0) / 4)  # not (1 + 4) / 2


@pytest.mark.parametrize("select_by", ["loss", "em"])
@pytest.mark.parametrize("bad_loss", [float("nan"), float("inf")])
def test_non_finite_loss_gives_no_agg_metrics(select_by, bad_loss):
    """Blown-up weights can still answer some questions right; they must never be selected as best."""
    m = make_task(select_by=select_by).metrics([dict(RECORDS[0], lm_loss=bad_loss)])
    assert not math.isfinite(m["loss"])
    assert m["agg_metrics"] is None


def test_invalid_select_by_names_the_allowed_values():
    with pytest.raises(ValueError) as err:
        StyleCaptioningTask(select_by="accuracy")
    message = str(err.value)
    assert "'accuracy'" in message
    for name in SELECT_BY:
        assert repr(name) in message
    assert set(SELECT_BY) == {
        "loss",
        "em",
        "vqa_acc",
        "style_head_acc",
        "probe_style_acc",
        "style_answer_label_rate",
        "caption_cider",
        "caption_style_naming_rate",
    }


def test_invalid_amp_dtype_names_the_allowed_values():
    with pytest.raises(
        ValueError, match=r"run.amp_dtype is .float32.; it must be one of \[.float16., .bfloat16.\]"
    ):
        StyleCaptioningTask(amp_dtype="float32")


def test_setup_task_reads_run_keys():
    run = OmegaConf.create(
        {
            "lm_weight": 0.5,
            "style_name_weight": 0.1,
            "style_kl_weight": 0.2,
            "style_ce_weight": 0.3,
            "style_question_types": ["style"],
            "style_kl_temperature": 3.0,
            "style_kl_teacher": "probe",
            "style_kl_detach": False,
            "style_probe_share": 0.25,
            "style_probe_max_rows": 2,
            "num_beams": 3,
            "max_len": 7,
            "min_len": 2,
            "select_by": "em",
            "amp": True,
            "amp_dtype": "bfloat16",
        }
    )
    task = StyleCaptioningTask.setup_task(SimpleNamespace(run_cfg=run))
    assert task.weights == {"lm_loss": 0.5, "style_name_loss": 0.1, "style_kl": 0.2, "style_ce": 0.3}
    assert task.style_question_types == {"style"}
    config = task.config
    assert config.style_kl_temperature == 3.0 and config.style_kl_teacher == "probe"
    assert config.style_kl_detach is False and config.style_probe_share == 0.25
    assert config.style_probe_max_rows == 2
    assert task.generation == {"num_beams": 3, "max_length": 7, "min_length": 2}
    assert task.select_by == "em" and task.amp is True and task.amp_dtype == torch.bfloat16
    default = StyleCaptioningTask.setup_task(SimpleNamespace(run_cfg=OmegaConf.create({})))
    assert default.weights == {"lm_loss": 1.0, "style_name_loss": 0.0, "style_kl": 0.0, "style_ce": 0.0}
    assert default.style_question_types == {"style"} and default.select_by == "loss"
    assert default.config.style_kl_teacher == "image" and default.config.style_kl_detach is True


def test_the_old_row_rule_and_hit_term_keys_are_refused():
    """The any-style hit term and the row rule that chose rows by their own question are gone: a YAML
    still setting them fails with the key named, not silently."""
    for key, value in (("style_hit_weight", 0.1), ("style_rows", "answer_names_style")):
        with pytest.raises(Exception, match=key):
            StyleCaptioningTask.setup_task(SimpleNamespace(run_cfg=OmegaConf.create({key: value})))
    with pytest.raises(ValueError, match="style_kl_teacher"):
        StyleCaptioningTask(style_kl_teacher="text")
    with pytest.raises(ValueError, match="style_probe_max_rows"):
        StyleCaptioningTask(style_probe_max_rows=0)


def test_a_weighted_term_that_covers_no_train_row_is_reported():
    covered = coverage([False, False, False], [0, 2, 0])
    assert covered == {
        "lm_loss": 3,
        "style_name_loss": 0,
        "style_kl": 0,
        "style_ce": 0,
        "any_style_token_rows": 1,
    }
    weights = {"lm_loss": 1.0, "style_name_loss": 0.1, "style_kl": 0.0, "style_ce": 0.0}
    assert uncovered_terms(covered, weights) == ["style_name_loss"]
    assert uncovered_terms(covered, dict(weights, style_name_loss=0.0)) == []
    config = StyleCaptioningTask().config
    with pytest.raises(ValueError, match=r"terms \['style_name_loss'\] cover no train row"):
        check_coverage(covered, weights, config)
    check_coverage(covered, weights, config, fail=False)  # evaluating: a warning, nothing trains
    # every labelled row is covered whatever its question: ArtQuest's types, no style question
    assert coverage([True, True, False], [0, 0, 0])["style_kl"] == 2


def _parts(**overrides):
    parts = {
        "batch_lm_loss": torch.tensor(1.5, requires_grad=True),
        "style_name_loss": torch.tensor([0.2, 0.4, 0.9], requires_grad=True),
        "style_kl": torch.tensor([1.0, 3.0, 100.0], requires_grad=True),
        "style_ce": torch.tensor([0.5, 2.0, 7.0], requires_grad=True),
        "probe_rows": torch.tensor([True, False, False]),
        "style_ids": torch.tensor([1, 0, -1]),
    }
    parts.update(overrides)
    return parts


def test_batch_terms_weights_each_term_over_its_rows():
    terms = batch_terms(_parts(), make_task().weights)
    assert terms["lm_loss"].item() == pytest.approx(1.5)
    assert terms["style_name_loss"].item() == pytest.approx(0.2)  # probed rows: row 0 only
    assert terms["style_kl"].item() == pytest.approx(1.0)
    assert terms["style_ce"].item() == pytest.approx((0.5 + 2.0) / 2)  # labelled rows 0 and 1
    assert terms["loss"].item() == pytest.approx(1.0 * 1.5 + 0.5 * 0.2 + 0.25 * 1.0 + 2.0 * 1.25)
    assert set(terms) == {"lm_loss", "style_name_loss", "style_kl", "style_ce", "loss"}


def test_batch_terms_gradients_reach_only_the_counted_rows():
    parts = _parts()
    batch_terms(parts, make_task().weights)["loss"].backward()
    assert parts["batch_lm_loss"].grad.item() == pytest.approx(1.0)
    assert parts["style_name_loss"].grad.tolist() == pytest.approx([0.5, 0.0, 0.0])
    assert parts["style_kl"].grad.tolist() == pytest.approx([0.25, 0.0, 0.0])
    assert parts["style_ce"].grad.tolist() == pytest.approx([1.0, 1.0, 0.0])


def test_batch_terms_without_style_rows_is_the_lm_term_and_still_differentiable():
    parts = _parts(
        probe_rows=torch.tensor([False, False, False]),
        style_ids=torch.tensor([-1, -1, -1]),
    )
    terms = batch_terms(parts, make_task().weights)
    assert (
        terms["style_name_loss"].item() == 0.0
        and terms["style_kl"].item() == 0.0
        and terms["style_ce"].item() == 0.0
    )
    assert terms["loss"].item() == pytest.approx(1.5)
    terms["loss"].backward()
    assert parts["style_kl"].grad.tolist() == [0.0, 0.0, 0.0]


def test_the_artquest_projects_carry_the_style_terms_on_the_probe():
    """Real ArtQuest asks no style question: its projects weight the probe's terms and ask no style
    question of the answers."""
    from pathlib import Path

    from lavis_gated.configs.run_config import task_config

    for name in ("artquest.yaml", "artquest_eval.yaml", "demo_artquest_types.yaml"):
        run = OmegaConf.load(Path(__file__).resolve().parent.parent / "projects" / "gated" / name).run
        config = task_config(run)
        assert config.style_name_weight > 0 and config.style_kl_weight > 0, name
        assert not config.style_question_types, name


def test_the_epoch_summary_and_table_show_null_metrics_as_null():
    from lavis_gated.reports.tables import epoch_summary, format_table

    m = make_task(select_by="probe_style_acc").metrics([r for r in RECORDS if r["style_id"] < 0])
    line = epoch_summary(3, None, "val", m, "probe_style_acc")
    assert "kl null" in line and "name null" in line and "agg_metrics not finite" in line
    assert "null" in format_table(m)

"""StyleCaptioningTask: metrics() from hand-made per-sample records, loss_terms (batch_terms, style_rows),
config checks."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from helpers.metric_keys import COUNT_KEYS, FLOAT_METRIC_KEYS, TASK_METRIC_KEYS
from omegaconf import OmegaConf

from lavis_gated.configs.run_config import SELECT_BY
from lavis_gated.tasks.checks import check_coverage
from lavis_gated.tasks.losses import StyleRowRule, batch_terms, coverage, uncovered_terms
from lavis_gated.tasks.style_captioning import StyleCaptioningTask

WEIGHTS = {"lm_weight": 1.0, "style_hit_weight": 0.5, "style_kl_weight": 0.25, "style_ce_weight": 2.0}


def record(
    qid,
    question_type,
    prediction,
    answer,
    style,
    style_id,
    style_row,
    head,
    hits,
    positions,
    lm_loss,
    style_hit_loss,
    style_kl,
    style_ce,
    lm_tokens,
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
        "style_id": style_id,
        "style_row": style_row,
        "style_head_prediction": head,
        "style_hits": hits,
        "style_positions": positions,
        "lm_loss": lm_loss,
        "style_hit_loss": style_hit_loss,
        "style_kl": style_kl,
        "style_ce": style_ce,
        "lm_tokens": lm_tokens,
    }


RECORDS = [
    # labelled style question: a style row; head right
    record("q1", "style", "Pop Art", "pop art", "pop art", 2, True, 2, 1, 2, 1.0, 0.2, 0.4, 0.1, 2),
    # labelled style question: a style row; head wrong
    record("q2", "style", "cubism", "cubism", "cubism", 0, True, 1, 0, 3, 2.0, 0.6, 0.8, 1.5, 3),
    # labelled shape question: not a style row (style_question_types), but labelled; head right
    record("q3", "shape", "circle", "square", "cubism", 0, False, 0, 1, 1, 3.0, 0.9, 5.0, 0.3, 1),
    # style unknown to the vocabulary: counted as unknown, excluded from style terms
    record("q4", "style", "the baroque", "baroque", "baroque", -1, False, 1, 0, 2, 2.0, 1.0, 9.0, 0.0, 2),
    # no style label at all: not "unknown"
    record("q5", "shape", "Two", "2", "", -1, False, 0, 2, 2, 4.0, 0.0, 7.0, 0.0, 4),
]

LM_LOSS = (1.0 * 2 + 2.0 * 3 + 3.0 * 1 + 2.0 * 2 + 4.0 * 4) / (2 + 3 + 1 + 2 + 4)  # weighted by answer tokens
EXPECTED_LOSS = 1.0 * LM_LOSS + 0.5 * 0.4 + 0.25 * 0.6 + 2.0 * (1.9 / 3)


def make_task(**kwargs):
    settings = {**WEIGHTS, "style_question_types": ["style"], "caption_tokenizer": "words", **kwargs}
    return StyleCaptioningTask(**settings)


def test_metrics_every_number():
    task = make_task()
    task.style_names = ["cubism", "pop art", "square"]  # a vocabulary naming q3's reference "square" too
    m = task.metrics(RECORDS)
    assert m["num_samples"] == 5
    assert m["num_unknown_style"] == 1
    assert m["num_style_rows"] == 2 and m["num_hit_rows"] == 2
    assert m["lm_loss"] == pytest.approx(31 / 12)  # all records, each weighted by its answer tokens
    assert m["style_hit_loss"] == pytest.approx((0.2 + 0.6) / 2)  # style rows only
    assert m["style_kl"] == pytest.approx((0.4 + 0.8) / 2)  # style rows only
    assert m["style_ce"] == pytest.approx((0.1 + 1.5 + 0.3) / 3)  # labelled rows
    assert m["style_hit_rate"] == pytest.approx((1 + 0) / (2 + 3))  # sum hits / sum positions over style rows
    assert m["style_word_hit_rate"] == pytest.approx(
        2 / 3
    )  # q1, q2 name their style; q3 says circle, not square
    assert m["style_head_acc"] == pytest.approx(2 / 3)  # labelled rows
    assert m["loss"] == pytest.approx(EXPECTED_LOSS)
    assert m["em"] == pytest.approx(2 / 5)
    assert m["vqa_acc"] == pytest.approx(4 / 5)
    assert m["em_by_type"] == pytest.approx({"shape": 0.0, "style": 2 / 3})
    assert m["vqa_acc_by_type"] == pytest.approx({"shape": 0.5, "style": 1.0})
    assert m["agg_metrics"] == pytest.approx(1.0 / (1.0 + EXPECTED_LOSS))
    # ROUGE-L per answer: 1, 1, 0, "the baroque" vs "baroque" (P 1/2, R 1, beta 1.2), 0
    assert m["rougeL"] == pytest.approx((2 + (1 + 1.44) * 0.5 / (1 + 1.44 * 0.5)) / 5)
    assert m["bleu4"] < 1e-3  # no answer has four words
    assert m["cider"] >= 0.0
    assert m["caption_tokenizer"] == "words"
    assert set(m) == TASK_METRIC_KEYS


def test_style_ce_is_reported_only_when_trained():
    assert "style_ce" not in make_task(style_ce_weight=0.0).metrics(RECORDS)
    assert "style_ce" in make_task(style_ce_weight=0.1).metrics(RECORDS)


@pytest.mark.parametrize(
    "select_by, expected",
    [
        ("loss", 1.0 / (1.0 + EXPECTED_LOSS)),
        ("em", 2 / 5),
        ("vqa_acc", 4 / 5),
        ("style_head_acc", 2 / 3),
        ("style_hit_rate", 1 / 5),
    ],
)
def test_agg_metrics_follows_select_by(select_by, expected):
    assert make_task(select_by=select_by).metrics(RECORDS)["agg_metrics"] == pytest.approx(expected)


def test_loss_uses_the_task_weights():
    m = make_task(lm_weight=0.0, style_hit_weight=0.0, style_kl_weight=1.0, style_ce_weight=0.0).metrics(
        RECORDS
    )
    assert m["loss"] == pytest.approx(0.6)
    m = StyleCaptioningTask(caption_tokenizer="words").metrics(RECORDS)  # defaults: LM only
    assert m["loss"] == pytest.approx(LM_LOSS)


def test_metrics_are_json_plain_numbers():
    task = make_task()
    task.style_names = ["cubism", "pop art"]
    m = task.metrics(RECORDS)
    for key in COUNT_KEYS:
        assert isinstance(m[key], int), key
    for key in FLOAT_METRIC_KEYS:
        assert isinstance(m[key], float), key


def test_metrics_without_style_rows_or_labels_are_null_not_zero():
    """Finding 7: a style term that covers no row printed 0.0000, which reads as a perfect loss: now null."""
    records = [r for r in RECORDS if r["style_id"] < 0]
    m = make_task(select_by="style_hit_rate").metrics(records)
    assert m["num_samples"] == 2 and m["num_style_rows"] == 0 and m["num_hit_rows"] == 0
    for key in ("style_hit_loss", "style_kl", "style_ce", "style_hit_rate", "style_head_acc"):
        assert m[key] is None, key
    assert m["style_word_hit_rate"] is None  # no reference names a style of the (empty) vocabulary
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
    assert set(SELECT_BY) == {"loss", "em", "vqa_acc", "style_head_acc", "style_hit_rate"}


def test_invalid_amp_dtype_names_the_allowed_values():
    with pytest.raises(
        ValueError, match=r"run.amp_dtype is .float32.; it must be one of \[.float16., .bfloat16.\]"
    ):
        StyleCaptioningTask(amp_dtype="float32")


def test_setup_task_reads_run_keys():
    run = OmegaConf.create(
        {
            "lm_weight": 0.5,
            "style_hit_weight": 0.1,
            "style_kl_weight": 0.2,
            "style_ce_weight": 0.3,
            "style_question_types": ["style"],
            "style_rows": "answer_names_style",
            "style_kl_temperature": 3.0,
            "num_beams": 3,
            "max_len": 7,
            "min_len": 2,
            "select_by": "em",
            "amp": True,
            "amp_dtype": "bfloat16",
        }
    )
    task = StyleCaptioningTask.setup_task(SimpleNamespace(run_cfg=run))
    assert task.weights == {"lm_loss": 0.5, "style_hit_loss": 0.1, "style_kl": 0.2, "style_ce": 0.3}
    assert task.style_question_types == {"style"}
    assert task.row_rule.rule == "answer_names_style" and task.config.style_kl_temperature == 3.0
    assert task.generation == {"num_beams": 3, "max_length": 7, "min_length": 2}
    assert task.select_by == "em" and task.amp is True and task.amp_dtype == torch.bfloat16
    default = StyleCaptioningTask.setup_task(SimpleNamespace(run_cfg=OmegaConf.create({})))
    assert default.weights == {"lm_loss": 1.0, "style_hit_loss": 0.0, "style_kl": 0.0, "style_ce": 0.0}
    assert default.style_question_types is None and default.select_by == "loss"


def test_style_rows_labelled_and_of_a_style_question_type():
    ids = [0, -1, 2, 1]
    types = ["style", "style", "shape", "style"]
    answers = ["Cubism", "Cubism", "Circle", "Pop Art"]
    names = ["cubism", "impressionism", "pop art"]
    assert StyleRowRule("question_types", ["style"]).rows(ids, types, answers, names) == [
        True,
        False,
        False,
        True,
    ]
    assert StyleRowRule("question_types", None).rows(ids, types, answers, names) == [True, False, True, True]
    assert StyleRowRule("all_labelled").rows(ids, types, answers, names) == [True, False, True, True]


def test_answer_names_style_rows_for_data_without_a_style_question_type():
    """Finding 7: ArtQuest has no `style` question type; its `school` answers are often style names."""
    names = ["art nouveau (modern)", "post impressionism", "ukiyo e", "pop art"]
    rows = [
        ("school", "Art Nouveau (Modern)"),
        ("school", "Italian"),
        ("artist", "Katsushika Hokusai"),
        ("school", "Post-Impressionism"),
        ("title", "Pop artist at work"),  # "pop artist" is not "pop art"
        ("timeframe", "Ukiyo-e, 1801-1850"),
    ]
    types, answers = [t for t, _ in rows], [a for _, a in rows]
    rule = StyleRowRule("answer_names_style")
    assert rule.rows([0] * 6, types, answers, names) == [True, False, False, True, False, True]
    assert rule.rows([-1] * 6, types, answers, names) == [False] * 6  # labels are still needed
    typed = StyleRowRule("answer_names_style", ["school"])
    assert typed.rows([0] * 6, types, answers, names) == [True, False, False, True, False, False]


def test_style_row_rule_settings_are_checked():
    with pytest.raises(ValueError, match="style_rows is 'styles'"):
        StyleRowRule("styles")
    with pytest.raises(ValueError, match="all_labelled but run.style_question_types"):
        StyleRowRule("all_labelled", ["style"])
    with pytest.raises(ValueError, match="answer_names_style"):
        StyleCaptioningTask(style_rows="answer_name_style")


def test_a_weighted_term_that_covers_no_train_row_is_reported():
    covered = coverage([False, False, True], [0, 2, 0], [True, True, True])
    assert covered == {"lm_loss": 3, "style_hit_loss": 0, "style_kl": 1, "style_ce": 3}
    weights = {"lm_loss": 1.0, "style_hit_loss": 0.1, "style_kl": 0.1, "style_ce": 0.0}
    assert uncovered_terms(covered, weights) == ["style_hit_loss"]
    assert uncovered_terms(covered, dict(weights, style_hit_loss=0.0)) == []
    rule = StyleRowRule("question_types", ["style"])
    with pytest.raises(ValueError, match=r"terms \['style_hit_loss'\] cover no train row \(style_rows: "):
        check_coverage(covered, weights, rule)
    check_coverage(covered, weights, rule, fail=False)  # evaluating: a warning, nothing trains


def _parts(**overrides):
    parts = {
        "batch_lm_loss": torch.tensor(1.5, requires_grad=True),
        "style_hit_loss": torch.tensor([0.2, 0.4, 0.9], requires_grad=True),
        "style_kl": torch.tensor([1.0, 3.0, 100.0], requires_grad=True),
        "style_ce": torch.tensor([0.5, 2.0, 7.0], requires_grad=True),
        "style_rows": torch.tensor([True, False, False]),
        "hit_rows": torch.tensor([True, False, False]),
        "style_ids": torch.tensor([1, 0, -1]),
    }
    parts.update(overrides)
    return parts


def test_batch_terms_weights_each_term_over_its_rows():
    terms = batch_terms(_parts(), make_task().weights)
    assert terms["lm_loss"].item() == pytest.approx(1.5)
    assert terms["style_hit_loss"].item() == pytest.approx(0.2)  # style rows: row 0 only
    assert terms["style_kl"].item() == pytest.approx(1.0)
    assert terms["style_ce"].item() == pytest.approx((0.5 + 2.0) / 2)  # labelled rows 0 and 1
    assert terms["loss"].item() == pytest.approx(1.0 * 1.5 + 0.5 * 0.2 + 0.25 * 1.0 + 2.0 * 1.25)
    assert set(terms) == {"lm_loss", "style_hit_loss", "style_kl", "style_ce", "loss"}


def test_batch_terms_gradients_reach_only_the_counted_rows():
    parts = _parts()
    batch_terms(parts, make_task().weights)["loss"].backward()
    assert parts["batch_lm_loss"].grad.item() == pytest.approx(1.0)
    assert parts["style_hit_loss"].grad.tolist() == pytest.approx([0.5, 0.0, 0.0])
    assert parts["style_kl"].grad.tolist() == pytest.approx([0.25, 0.0, 0.0])
    assert parts["style_ce"].grad.tolist() == pytest.approx([1.0, 1.0, 0.0])


def test_batch_terms_without_style_rows_is_the_lm_term_and_still_differentiable():
    parts = _parts(
        style_rows=torch.tensor([False, False, False]),
        hit_rows=torch.tensor([False, False, False]),
        style_ids=torch.tensor([-1, -1, -1]),
    )
    terms = batch_terms(parts, make_task().weights)
    assert (
        terms["style_hit_loss"].item() == 0.0
        and terms["style_kl"].item() == 0.0
        and terms["style_ce"].item() == 0.0
    )
    assert terms["loss"].item() == pytest.approx(1.5)
    terms["loss"].backward()
    assert parts["style_kl"].grad.tolist() == [0.0, 0.0, 0.0]


def test_the_artquest_projects_apply_the_style_terms_where_answers_name_styles():
    """Finding 7: ArtQuest has no `style` question type, and artquest.yaml applied the hit-rate term to every
    labelled row (answers about artists, titles and dates too)."""
    from pathlib import Path

    from lavis_gated.configs.run_config import task_config

    for name in ("artquest.yaml", "artquest_eval.yaml"):
        run = OmegaConf.load(Path(__file__).resolve().parent.parent / "projects" / "gated" / name).run
        assert task_config(run).style_rows == "answer_names_style", name


def test_the_epoch_summary_and_table_show_null_metrics_as_null():
    from lavis_gated.reports.tables import epoch_summary, format_table

    m = make_task(select_by="style_hit_rate").metrics([r for r in RECORDS if r["style_id"] < 0])
    line = epoch_summary(3, None, "val", m, "style_hit_rate")
    assert "kl null" in line and "hit null" in line and "agg_metrics not finite" in line
    assert "null" in format_table(m)

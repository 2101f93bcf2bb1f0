"""answer_metrics: exact match, VQA-normalised accuracy, overall and per question type, style words; by
hand, and the VQA normalisation against LAVIS's own VQAEval."""

import pytest
from lavis.common.vqa_tools.vqa_eval import VQAEval

from lavis_gated.styles import mentions_style
from lavis_gated.tasks.metrics import (
    answer_metrics,
    any_style_word_rate,
    exact_match,
    names_label,
    normalise_exact,
    normalise_vqa,
    style_answer_label_rate,
    vqa_accuracy,
)


@pytest.mark.parametrize(
    "prediction, answer, em, vqa",
    [
        ("pop art", "pop art", 1.0, 1.0),
        ("Pop Art", "pop art", 1.0, 1.0),  # case
        ("  pop   art ", "pop art", 1.0, 1.0),  # surrounding / repeated spaces
        ("pop\tart\n", "pop art", 1.0, 1.0),  # any whitespace
        ("the circle", "circle", 0.0, 1.0),  # articles
        ("a circle", "an circle", 0.0, 1.0),
        ("circle.", "circle", 0.0, 1.0),  # trailing period
        ("circle!", "circle", 0.0, 1.0),  # punctuation
        ("ukiyo-e", "ukiyo e", 0.0, 1.0),  # hyphen -> space
        ("(square)", "square", 0.0, 1.0),
        ("Two", "2", 0.0, 1.0),  # number words
        ("none", "0", 0.0, 1.0),
        ("ten circles", "10 circles", 0.0, 1.0),
        ("3.5", "35", 0.0, 0.0),  # a period between digits is kept
        ("square", "circle", 0.0, 0.0),
        ("pop art", "pop", 0.0, 0.0),
        ("theatre", "atre", 0.0, 0.0),  # articles only as whole words
        ("", "", 1.0, 1.0),
        # finding 5: the cases where the old normalisation and LAVIS's differed
        ("1,000", "1000", 0.0, 1.0),  # a comma between digits goes
        ("dont", "don't", 0.0, 1.0),  # the contraction map
        ("$5", "5", 0.0, 0.0),  # "$" is not in VQAEval's punctuation list
        ("Pop-Art - 1960", "pop art 1960", 0.0, 0.0),  # " -" in the text: hyphens go, not become spaces
        ("Ukiyo-e, 1,000", "ukiyo e 1000", 0.0, 0.0),  # a digit comma digit: every mark goes ("ukiyoe")
        ("Post-Impressionism", "post impressionism", 0.0, 1.0),  # otherwise a hyphen is a space
        ("Art Nouveau (Modern)", "art nouveau modern", 0.0, 1.0),
        ("1801 - 1850", "1801-1850", 0.0, 1.0),
    ],
)
def test_exact_match_and_vqa_accuracy(prediction, answer, em, vqa):
    assert exact_match(prediction, answer) == em
    assert vqa_accuracy(prediction, answer) == vqa


@pytest.mark.parametrize(
    "text, exact, vqa",
    [
        ("  The  Starry Night! ", "the starry night!", "starry night"),
        ("Pop_Art", "pop_art", "pop art"),
        ("Three, or four?", "three, or four?", "3 or 4"),
        ("2.5 m.", "2.5 m.", "2.5 m"),
        (3, "3", "3"),  # non-strings are converted
    ],
)
def test_normalisations(text, exact, vqa):
    assert normalise_exact(text) == exact
    assert normalise_vqa(text) == vqa


@pytest.mark.parametrize(
    "text",
    [
        "1,000",
        "dont",
        "$5",
        "Pop-Art - 1960",
        "Ukiyo-e, 1,000",
        "Art Nouveau (Modern)",
        "I'm here.",
        " Two\t",
    ],
)
def test_vqa_normalisation_is_lavis_vqaeval(text):
    lavis = VQAEval()
    cleaned = text.replace("\n", " ").replace("\t", " ").strip()
    assert normalise_vqa(text) == lavis.processDigitArticle(lavis.processPunctuation(cleaned))


def test_answer_metrics_overall_and_per_type():
    records = [
        {"prediction": "Pop Art", "answer": "pop art", "question_type": "style"},  # em 1, vqa 1
        {"prediction": "the cubism", "answer": "cubism", "question_type": "style"},  # em 0, vqa 1
        {"prediction": "impressionism", "answer": "cubism", "question_type": "style"},  # em 0, vqa 0
        {"prediction": "Two circles", "answer": "2 circles", "question_type": "shape"},  # em 0, vqa 1
        {"prediction": "square", "answer": "square", "question_type": "shape"},  # em 1, vqa 1
    ]
    m = answer_metrics(records)
    assert m["em"] == pytest.approx(2 / 5)
    assert m["vqa_acc"] == pytest.approx(4 / 5)
    assert m["em_by_type"] == pytest.approx({"shape": 0.5, "style": 1 / 3})
    assert m["vqa_acc_by_type"] == pytest.approx({"shape": 1.0, "style": 2 / 3})
    assert list(m["em_by_type"]) == ["shape", "style"]  # sorted by type
    assert set(m) == {"em", "vqa_acc", "em_by_type", "vqa_acc_by_type"}


def test_answer_metrics_overall_is_per_sample_not_mean_of_types():
    records = [{"prediction": "a", "answer": "b", "question_type": "style"}] * 3 + [
        {"prediction": "x", "answer": "x", "question_type": "shape"}
    ]
    m = answer_metrics(records)
    assert m["em"] == pytest.approx(0.25)  # the mean of the per-type values would be 0.5
    assert m["em_by_type"] == {"shape": 1.0, "style": 0.0}


def test_answer_metrics_of_no_records_is_zero():
    assert answer_metrics([]) == {"em": None, "vqa_acc": None, "em_by_type": {}, "vqa_acc_by_type": {}}


STYLES = ["pop art", "ukiyo e", "art nouveau (modern)", "cubism"]


@pytest.mark.parametrize(
    "text, mentions",
    [
        ("pop art", True),
        ("It is Pop-Art.", True),  # case, hyphen, punctuation
        ("ukiyo-e", True),  # the vocabulary spells it "ukiyo e"
        ("Art Nouveau (Modern)", True),  # names with brackets
        ("pop artist", False),  # whole words only
        ("art", False),
        ("synthetic cubism", True),  # a longer name containing a style name
        ("", False),
    ],
)
def test_mentions_style(text, mentions):
    assert mentions_style(text, STYLES) is mentions


def test_any_style_word_rate_counts_only_answers_that_name_a_style():
    records = [
        {"prediction": "pop art", "answer": "pop art"},  # reference names a style; prediction too: counted
        {"prediction": "cubism", "answer": "pop art"},  # a different style: any style counts here
        {"prediction": "a red circle", "answer": "ukiyo-e"},  # no style named: miss
        {"prediction": "square", "answer": "Cubism."},  # miss
        {"prediction": "cubism", "answer": "circle"},  # reference names none: not counted
    ]
    assert any_style_word_rate(records, STYLES) == pytest.approx(2 / 4)
    assert any_style_word_rate(records[4:], STYLES) is None  # no reference names a style: no rate
    assert any_style_word_rate(records, []) is None


@pytest.mark.parametrize(
    "prediction, label, hit",
    [
        ("Pop Art", "pop art", True),
        ("It is pop-art.", "pop art", True),
        ("Cubism", "pop art", False),  # a wrong style is not a hit
        ("pop art or cubism", "pop art", False),  # listing several styles is not a hit
        ("synthetic cubism", "synthetic cubism", True),  # "cubism" inside the label is not a second style
        ("synthetic cubism", "cubism", False),  # the longer style is another style
        ("a red circle", "pop art", False),
    ],
)
def test_names_label_counts_only_the_label(prediction, label, hit):
    assert names_label(prediction, label, STYLES + ["synthetic cubism"]) is hit


def test_style_answer_label_rate_reads_style_questions_and_their_labels():
    names = STYLES
    records = [
        {"prediction": "pop art", "question_type": "style", "style_id": names.index("pop art")},  # hit
        {"prediction": "cubism", "question_type": "style", "style_id": names.index("pop art")},  # wrong style
        {"prediction": "cubism", "question_type": "shape", "style_id": names.index("cubism")},  # not asked
        {"prediction": "cubism", "question_type": "style", "style_id": -1},  # no label: not counted
    ]
    assert style_answer_label_rate(records, names, {"style"}) == pytest.approx(1 / 2)
    assert style_answer_label_rate(records, names, set()) is None  # real ArtQuest asks no style question

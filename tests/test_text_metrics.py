"""BLEU-4 / ROUGE-L / CIDEr through pycocoevalcap's scorers (no Java), against hand-computed values."""

import math

import pytest

from lavis_gated.tasks.text_metrics import caption_metrics, tokenise


def test_tokenise_lowercases_and_drops_punctuation():
    assert tokenise("  Pop-Art, by Warhol!  ") == "pop art by warhol"
    assert tokenise("") == ""
    assert tokenise(1900) == "1900"


def test_perfect_predictions():
    records = [
        {"prediction": "A red circle on blue.", "answer": "a red circle on blue"},
        {"prediction": "two small squares in green", "answer": "Two small squares in green"},
    ]
    m = caption_metrics(records)
    assert m["bleu4"] == pytest.approx(1.0)
    assert m["rougeL"] == pytest.approx(1.0)
    # every n-gram occurs in one of the two references: idf log 2, each cosine 1, CIDEr = 10 * mean over n
    assert m["cider"] == pytest.approx(10.0)


def test_partial_prediction_by_hand():
    m = caption_metrics([{"prediction": "a b c d e", "answer": "a b c d f"}])
    # clipped n-gram precisions 4/5, 3/4, 2/3, 1/2; same length so no brevity penalty
    assert m["bleu4"] == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25, rel=1e-6)
    # LCS 4 of 5 words both ways: precision = recall = 0.8, so the F-measure is 0.8 for any beta
    assert m["rougeL"] == pytest.approx(0.8)
    assert m["cider"] == 0.0  # one document: every idf is log(1) = 0


def test_brevity_penalty():
    m = caption_metrics([{"prediction": "a b c d", "answer": "a b c d e f"}])
    assert m["bleu4"] == pytest.approx(math.exp(1 - 6 / 4), rel=1e-6)  # all precisions 1


def test_no_records():
    assert caption_metrics([]) == {"bleu4": 0.0, "rougeL": 0.0, "cider": 0.0}

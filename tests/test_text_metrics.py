"""BLEU-4 / ROUGE-L / CIDEr through pycocoevalcap's scorers, against hand-computed values; its PTB tokenizer
when Java runs, lower-cased words otherwise, and the metrics name which."""

import math

import pytest

from lavis_gated.tasks import metrics
from lavis_gated.tasks.metrics import caption_metrics, chosen_tokenizer, ptb_runs, tokenise

NEEDS_JAVA = pytest.mark.skipif(
    not ptb_runs(),
    reason="no Java runtime: pycocoevalcap's PTB tokenizer cannot run (the words half still runs)",
)
# Finding 6: hyphens, contractions, brackets and capitals, where \w+ and PTB tokenisation differ.
CRAFTED = [
    {"prediction": "Ukiyo-e woodblock print of a wave", "answer": "Ukiyo-e woodblock print of the wave"},
    {"prediction": "It's Art Nouveau (Modern), isn't it?", "answer": "It's Art Nouveau (Modern), isn't it."},
    {
        "prediction": "a Post-Impressionism landscape by Cezanne",
        "answer": "Post-Impressionism landscape, Cezanne",
    },
    {"prediction": "don't know the painter", "answer": "dont know the painter"},
]


def test_tokenise_lowercases_and_drops_punctuation():
    assert tokenise("  Pop-Art, by Warhol!  ") == "pop art by warhol"
    assert tokenise("") == ""
    assert tokenise(1900) == "1900"


@pytest.mark.parametrize("tokenizer", ["words", "auto"])
def test_perfect_predictions(tokenizer):
    records = [
        {"prediction": "A red circle on blue.", "answer": "a red circle on blue"},
        {"prediction": "two small squares in green", "answer": "Two small squares in green"},
    ]
    m = caption_metrics(records, tokenizer)
    assert m["bleu4"] == pytest.approx(1.0)
    assert m["rougeL"] == pytest.approx(1.0)
    # every n-gram occurs in one of the two references: idf log 2, each cosine 1, CIDEr = 10 * mean over n
    assert m["cider"] == pytest.approx(10.0)


def test_partial_prediction_by_hand():
    m = caption_metrics([{"prediction": "a b c d e", "answer": "a b c d f"}], "words")
    # clipped n-gram precisions 4/5, 3/4, 2/3, 1/2; same length so no brevity penalty
    assert m["bleu4"] == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25, rel=1e-6)
    # LCS 4 of 5 words both ways: precision = recall = 0.8, so the F-measure is 0.8 for any beta
    assert m["rougeL"] == pytest.approx(0.8)
    assert m["cider"] == 0.0  # one document: every idf is log(1) = 0


def test_brevity_penalty():
    m = caption_metrics([{"prediction": "a b c d", "answer": "a b c d e f"}], "words")
    assert m["bleu4"] == pytest.approx(math.exp(1 - 6 / 4), rel=1e-6)  # all precisions 1


def test_no_records_have_no_caption_metrics():
    assert caption_metrics([], "words") == {
        "bleu4": None,
        "rougeL": None,
        "cider": None,
        "caption_tokenizer": "words",
    }


def test_without_java_the_words_tokenisation_is_used_and_named(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    metrics.ptb_runs.cache_clear()
    try:
        assert chosen_tokenizer("auto") == "words"
        assert caption_metrics(CRAFTED, "auto")["caption_tokenizer"] == "words"
        with pytest.raises(RuntimeError, match="default-jre-headless"):
            chosen_tokenizer("ptb")
    finally:
        metrics.ptb_runs.cache_clear()


@NEEDS_JAVA
def test_with_java_the_scores_are_pycocoevalcaps_with_its_ptb_tokenizer():
    """Finding 6: \\w+ tokenisation gave BLEU-4 and CIDEr far from the COCO evaluation's on such text."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r["answer"]}] for i, r in enumerate(CRAFTED)})
    res = tokenizer.tokenize({i: [{"caption": r["prediction"]}] for i, r in enumerate(CRAFTED)})
    m = caption_metrics(CRAFTED, "auto")
    assert m["caption_tokenizer"] == "ptb"
    assert m["bleu4"] == pytest.approx(Bleu(4).compute_score(gts, res, verbose=0)[0][3], rel=1e-9)
    assert m["rougeL"] == pytest.approx(Rouge().compute_score(gts, res)[0], rel=1e-9)
    assert m["cider"] == pytest.approx(Cider().compute_score(gts, res)[0], rel=1e-9)
    words = caption_metrics(CRAFTED, "words")
    assert abs(words["cider"] - m["cider"]) > 0.05 * m["cider"]  # 6.15 against 5.60: tokenisation matters


@NEEDS_JAVA
def test_ptb_tokenisation_keeps_every_text_on_its_own_line():
    assert metrics.ptb_tokenise(["Ukiyo-e, don't.", "", "two\nlines", "  "]) == [
        "ukiyo-e do n't",
        "",
        "two lines",
        "",
    ]

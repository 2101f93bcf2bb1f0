"""Caption metrics: every reference of an image at once (BLEU-1..4, METEOR, ROUGE-L, CIDEr through
pycocoevalcap, its PTB tokenizer when Java runs), METEOR equal to pycocoevalcap's Meteor and named missing
without Java, SPICE named as not computed offline, METEOR for answers too, the per-style rate at which
captions name their image's style, and the count of captions the caption budget cuts."""

import logging

import pytest
from transformers import AutoTokenizer

from lavis_gated.models.backbones import PACKAGE_CONFIG_DIR
from lavis_gated.tasks import metrics
from lavis_gated.tasks.checks import report_caption_lengths
from lavis_gated.tasks.metrics import (
    caption_metrics,
    meteor_problem,
    ptb_tokenise,
    spice_problem,
    split_metrics,
    style_naming_rates,
    tokenise,
)

JAVA = meteor_problem() is None
NEEDS_JAVA = pytest.mark.skipif(
    not JAVA, reason="no Java runtime: METEOR cannot run (the missing case is tested)"
)
WEIGHTS = {"lm_loss": 1.0, "style_name_loss": 0.0, "style_kl": 0.0, "style_ce": 0.0}
# crafted: several references per image, hyphens, capitals and punctuation where tokenisations differ
CAPTIONS = [
    {
        "prediction": "An Ukiyo-e print of a great wave.",
        "answer": "A great wave over three boats.",
        "references": [
            "A great wave over three boats.",
            "Ukiyo-e print of a huge wave.",
            "Boats under a wave.",
        ],
        "style": "ukiyo e",
    },
    {
        "prediction": "a woman with a parasol on a hill",
        "answer": "A woman with a parasol stands on a hill.",
        "references": ["A woman with a parasol stands on a hill.", "An impressionist lady with an umbrella."],
        "style": "impressionism",
    },
    {
        "prediction": "a pop art painting of a circle",
        "answer": "an impressionism painting of a circle",
        "references": ["an impressionism painting of a circle", "a circle in an impressionism painting"],
        "style": "impressionism",
    },
]


def records(captions, question=""):
    """split_metrics' records: caption rows have no question."""
    base = {
        "question_type": "caption" if not question else "style",
        "question": question,
        "style": "",
        "style_source": "",
        "style_id": 0,
        "probe_row": False,
        "probe_prediction": -1,
        "style_head_prediction": 0,
        "style_hits": 0,
        "style_positions": 0,
        "lm_tokens": 5,
        "lm_loss": 1.0,
        "style_name_loss": 0.0,
        "style_kl": 0.0,
        "style_ce": 0.0,
    }
    return [{**base, **c} for c in captions]


@NEEDS_JAVA
def test_meteor_matches_pycocoevalcaps_meteor_on_crafted_captions():
    from pycocoevalcap.meteor.meteor import Meteor

    ours = caption_metrics(CAPTIONS, "ptb", meteor=True)
    texts = [t for c in CAPTIONS for t in c["references"]] + [c["prediction"] for c in CAPTIONS]
    tokens = ptb_tokenise(texts)
    refs, start = {}, 0
    for i, c in enumerate(CAPTIONS):
        refs[i], start = tokens[start : start + len(c["references"])], start + len(c["references"])
    hyps = {i: [tokens[start + i]] for i in range(len(CAPTIONS))}
    expected, _ = Meteor().compute_score(refs, hyps)  # a Meteor of its own, not the one the metrics keep
    assert ours["meteor"] == pytest.approx(expected, abs=1e-9)
    assert 0.1 < ours["meteor"] < 0.9 and "meteor" not in ours["not_computed"]
    # every reference counts: against its first reference only, the first image scores lower
    first_only = caption_metrics(
        [{**c, "references": c["references"][:1]} for c in CAPTIONS], "ptb", meteor=True
    )
    assert first_only["meteor"] < ours["meteor"]


def test_meteor_is_named_missing_without_java(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    m = caption_metrics(CAPTIONS, "words", meteor=True, prefix="caption_")
    assert m["caption_meteor"] is None
    assert m["not_computed"]["caption_meteor"] == "needs a Java runtime (none on PATH)"
    assert m["caption_cider"] > 0  # the other metrics still are


def test_spice_is_named_as_not_computed_when_it_cannot_run_offline():
    problem = spice_problem()
    m = caption_metrics(CAPTIONS, "words", prefix="caption_", spice=True)
    if problem:
        assert m["caption_spice"] is None and m["not_computed"]["caption_spice"] == problem
    else:  # CoreNLP's models are installed: it runs
        assert m["caption_spice"] is not None


def test_cider_and_bleu_score_each_image_against_all_its_references():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    m = caption_metrics(CAPTIONS, "words")
    refs = {i: [tokenise(t) for t in c["references"]] for i, c in enumerate(CAPTIONS)}
    hyps = {i: [tokenise(c["prediction"])] for i, c in enumerate(CAPTIONS)}
    assert m["cider"] == pytest.approx(Cider().compute_score(refs, hyps)[0])
    bleu = Bleu(4).compute_score(refs, hyps, verbose=0)[0]
    assert [m[f"bleu{n}"] for n in range(1, 5)] == pytest.approx(bleu)
    one = caption_metrics([{k: v for k, v in c.items() if k != "references"} for c in CAPTIONS], "words")
    assert one["cider"] != pytest.approx(m["cider"])  # without "references": the answer alone


def test_split_metrics_report_caption_metrics_apart_from_answer_metrics():
    answers = records(
        [
            {"prediction": "Ukiyo-e", "answer": "Ukiyo-e", "style": "ukiyo e"},
            {"prediction": "circle", "answer": "square", "style": ""},
        ],
        question="What style is this painting?",
    )
    m = split_metrics(
        records(CAPTIONS) + answers, WEIGHTS, "caption_cider", ["ukiyo e", "impressionism"], "words"
    )
    assert m["num_caption_rows"] == 3 and m["em"] == 0.5  # answers only
    assert m["caption_cider"] == pytest.approx(caption_metrics(CAPTIONS, "words")["cider"])
    assert m["cider"] == pytest.approx(caption_metrics(answers, "words")["cider"])
    assert m["agg_metrics"] == m["caption_cider"]
    # caption 1 names ukiyo-e; of the two impressionism images, none names impressionism
    assert m["caption_style_naming_rate"] == pytest.approx(1 / 3)
    assert m["caption_style_naming_rate_by_style"] == {"impressionism": 0.0, "ukiyo e": 1.0}
    only_answers = split_metrics(answers, WEIGHTS, "em", [], "words")
    assert only_answers["caption_cider"] is None and only_answers["caption_style_naming_rate"] is None


@NEEDS_JAVA
def test_meteor_is_computed_for_answers_too():
    answers = records(
        [{"prediction": "Ukiyo-e", "answer": "Ukiyo-e"}, {"prediction": "Pop Art", "answer": "Cubism"}], "Q?"
    )
    m = split_metrics(answers, WEIGHTS, "em", [], "ptb", meteor=True)
    assert 0.0 < m["meteor"] < 1.0 and m["caption_meteor"] is None


def test_style_naming_rates_need_the_images_own_style():
    rows = [
        {"prediction": "a Pop-Art print", "style": "pop art"},
        {"prediction": "a cubism painting", "style": "pop art"},  # names a style, not its own
        {"prediction": "a painting", "style": ""},  # no style: left out
    ]
    assert style_naming_rates(rows) == (0.5, {"pop art": 0.5})
    assert style_naming_rates([]) == (None, {})


def test_captions_the_caption_budget_cuts_are_counted_at_build_time(caplog):
    import os

    tokenizer = AutoTokenizer.from_pretrained(
        os.path.join(PACKAGE_CONFIG_DIR, "assets", "tiny", "opt"), use_fast=False
    )
    eos = tokenizer("\n", add_special_tokens=False).input_ids[0]
    captions = ["a circle", "an ukiyo-e print with a triangle in the middle of a square", "a square"]
    with caplog.at_level(logging.WARNING):
        report = report_caption_lengths(tokenizer, {"art_captions/train": captions}, eos, 30, 6)
    assert report["art_captions/train"]["cut"] == 1 and report["art_captions/train"]["captions"] == 3
    assert "1 of 3 captions are longer than model.max_caption_len = 6 tokens" in caplog.text
    assert "without the end token" in caplog.text

"""Answer metrics: exact match and VQA accuracy, overall and per question type; style names in answers.

vqa_acc normalises answers exactly as LAVIS's VQA evaluation does (lavis/common/vqa_tools/vqa_eval.py,
VQAEval.processPunctuation then processDigitArticle: punctuation, periods, number words, articles,
contractions; this module calls those methods), then matches the prediction against the one reference answer,
normalised the same way, as LAVIS's GQA task does for single-reference data. It is not the VQAv2 accuracy
min(1, matches among 10 annotators / 3), which needs several references per question (docs/evaluation.md).
"""

import importlib.util
import os
from collections import defaultdict
from functools import lru_cache

from lavis_gated.datasets.style_text import find_style_spans, mentions_style, style_words


@lru_cache(maxsize=1)
def _vqa_eval():
    """LAVIS's VQAEval (its normalisation methods only), loaded from its file: `import lavis...` would run
    lavis/__init__.py, which imports every model and torch (seconds), and the commands that only read a run's
    files (report, compare, ablate) start light. vqa_eval.py itself imports only sys and re."""
    package = importlib.util.find_spec("lavis").submodule_search_locations[0]
    path = os.path.join(package, "common", "vqa_tools", "vqa_eval.py")
    spec = importlib.util.spec_from_file_location("lavis_vqa_eval", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VQAEval()


def normalise_exact(text) -> str:
    """Lower case, surrounding and repeated whitespace removed."""
    return " ".join(str(text).lower().split())


@lru_cache(maxsize=65536)
def _normalise_vqa(text: str) -> str:
    text = text.replace("\n", " ").replace("\t", " ").strip()  # as VQAEval.evaluate prepares an answer
    lavis = _vqa_eval()
    return lavis.processDigitArticle(lavis.processPunctuation(text))


def normalise_vqa(text) -> str:
    """LAVIS's VQA answer normalisation ("1,000" -> "1000", "dont" -> "don't", "Ukiyo-e" -> "ukiyo e")."""
    return _normalise_vqa(str(text))


def exact_match(prediction, answer) -> float:
    return float(normalise_exact(prediction) == normalise_exact(answer))


def vqa_accuracy(prediction, answer) -> float:
    return float(normalise_vqa(prediction) == normalise_vqa(answer))


def _mean(scores, index):
    return sum(s[index] for s in scores) / len(scores) if scores else 0.0


def answer_metrics(records):
    """records: dicts with prediction, answer, question_type -> em, vqa_acc, em_by_type, vqa_acc_by_type."""
    by_type = defaultdict(list)
    for r in records:
        by_type[r["question_type"]].append(
            (exact_match(r["prediction"], r["answer"]), vqa_accuracy(r["prediction"], r["answer"]))
        )
    everything = [s for scores in by_type.values() for s in scores]
    return {
        "em": _mean(everything, 0),
        "vqa_acc": _mean(everything, 1),
        "em_by_type": {t: _mean(s, 0) for t, s in sorted(by_type.items())},
        "vqa_acc_by_type": {t: _mean(s, 1) for t, s in sorted(by_type.items())},
    }


def any_style_word_rate(records, style_names):
    """Share of predictions that name any style (datasets/style_text: whole words, case, hyphens and
    brackets ignored), among the records whose reference answer names one; None when no reference names a
    style. Any style counts, the wrong one too: a rate of style talk, not of correct styles."""
    referenced = [r for r in records if mentions_style(r["answer"], style_names)]
    if not referenced:
        return None
    return sum(mentions_style(r["prediction"], style_names) for r in referenced) / len(referenced)


def styles_named(text, style_names) -> set:
    """The styles a text names: each whole-word occurrence, less those inside a longer named style's span
    ("cubism" in "Synthetic Cubism" is not a second style)."""
    spans = find_style_spans(text, style_names)
    words = {index: style_words(style_names[index]) for index, _ in spans}

    def inside(a, b):
        n = len(words[a])
        return (
            a != b
            and len(words[b]) > n
            and any(words[b][i : i + n] == words[a] for i in range(len(words[b]) - n + 1))
        )

    found = {index for index, _ in spans}
    return {a for a in found if not any(inside(a, b) for b in found)}


def names_label(prediction, label, style_names) -> bool:
    """Whether the prediction names the label and no other style: naming a wrong style is not a hit, nor is
    listing several."""
    return (
        styles_named(prediction, style_names) == {style_names.index(label)} if label in style_names else False
    )


def style_answer_label_rate(records, style_names, style_question_types):
    """Among the labelled records whose question asks for a style (question_type in style_question_types),
    the share whose prediction names the label (names_label); None without such records."""
    asked = [
        r
        for r in records
        if r["question_type"] in style_question_types
        and r["style_id"] >= 0
        and r["style_id"] < len(style_names)
    ]
    if not asked:
        return None
    return sum(names_label(r["prediction"], style_names[r["style_id"]], style_names) for r in asked) / len(
        asked
    )

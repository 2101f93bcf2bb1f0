"""Answer metrics: exact match and VQA accuracy, overall and per question type; style words in answers.

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

from lavis_gated.datasets.style_text import mentions_style


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
    """records: dicts with prediction, answer, question_type -> em, vqa_acc (None without records),
    em_by_type, vqa_acc_by_type."""
    by_type = defaultdict(list)
    for r in records:
        by_type[r["question_type"]].append(
            (exact_match(r["prediction"], r["answer"]), vqa_accuracy(r["prediction"], r["answer"]))
        )
    everything = [s for scores in by_type.values() for s in scores]
    return {
        "em": _mean(everything, 0) if everything else None,
        "vqa_acc": _mean(everything, 1) if everything else None,
        "em_by_type": {t: _mean(s, 0) for t, s in sorted(by_type.items())},
        "vqa_acc_by_type": {t: _mean(s, 1) for t, s in sorted(by_type.items())},
    }


def style_word_hit_rate(records, style_names):
    """Share of predictions that name a style (datasets/style_text: whole words, case, hyphens and brackets
    ignored), among the records whose reference answer names one; None when no reference names a style."""
    referenced = [r for r in records if mentions_style(r["answer"], style_names)]
    if not referenced:
        return None
    return sum(mentions_style(r["prediction"], style_names) for r in referenced) / len(referenced)


def style_naming_rates(records):
    """(rate, {style: rate}): the share of generated texts that name their image's own style (record "style",
    a normalised label; datasets/style_text's whole-word match), over the records with a style, and per
    style; (None, {}) when no record has one. What a caption says of its image's style."""
    by_style = defaultdict(list)
    for r in records:
        if r["style"]:
            by_style[r["style"]].append(mentions_style(r["prediction"], [r["style"]]))
    named = [hit for hits in by_style.values() for hit in hits]
    if not named:
        return None, {}
    return sum(named) / len(named), {style: sum(h) / len(h) for style, h in sorted(by_style.items())}

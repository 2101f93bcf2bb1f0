"""Answer metrics: exact match and VQA accuracy, overall and per question type; style words in answers.

ArtQuest has one reference answer per question, so VQA accuracy is exact match after the standard
VQA answer normalisation (punctuation, articles, number words) rather than the 10-annotator vote.
"""

import re
from collections import defaultdict

_ARTICLES = {"a", "an", "the"}
_NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_PUNCTUATION = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$]")


def normalise_exact(text) -> str:
    """Lower case, surrounding and repeated whitespace removed."""
    return " ".join(str(text).lower().split())


def normalise_vqa(text) -> str:
    """The VQA evaluation's answer normalisation (punctuation, periods, articles, number words)."""
    text = _PUNCTUATION.sub(" ", normalise_exact(text))
    text = re.sub(r"(?!<=\d)(\.)(?!\d)", "", text)
    words = [_NUMBERS.get(w, w) for w in text.split() if w not in _ARTICLES]
    return " ".join(words)


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


def mentions_style(text, style_names) -> bool:
    """Whether `text` contains one of the style names as whole words, both VQA-normalised
    ("Ukiyo-e." mentions "ukiyo e"; "pop artist" does not mention "pop art")."""
    words = f" {normalise_vqa(text)} "
    return any(f" {name} " in words for name in filter(None, map(normalise_vqa, style_names)))


def style_word_hit_rate(records, style_names) -> float:
    """Share of predictions that mention a style name, among the records whose answer mentions one."""
    referenced = [r for r in records if mentions_style(r["answer"], style_names)]
    if not referenced:
        return 0.0
    return sum(mentions_style(r["prediction"], style_names) for r in referenced) / len(referenced)

"""Answer metrics: exact match and VQA accuracy, overall and per question type; style words in answers.

vqa_acc normalises answers exactly as LAVIS's VQA evaluation does (lavis/common/vqa_tools/vqa_eval.py,
VQAEval.processPunctuation then processDigitArticle: punctuation, periods, number words, articles,
contractions; this module calls those methods), then matches the prediction against the one reference answer,
normalised the same way, as LAVIS's GQA task does for single-reference data. It is not the VQAv2 accuracy
min(1, matches among 10 annotators / 3), which needs several references per question (docs/evaluation.md).

Caption metrics over generated text: BLEU-4, ROUGE-L and CIDEr with pycocoevalcap's own scorers.

The COCO evaluation tokenises with pycocoevalcap's PTBTokenizer (the Stanford PTB tokenizer; it runs Java):
lower case, "don't" -> "do n't", "Ukiyo-e" stays one token, "." "," "?" "-" and quotes dropped, and brackets
kept as the tokens -lrb- / -rrb- (its punctuation list spells them in upper case). That is used when a Java
runtime runs ("ptb"). Without Java each text is lower-cased and split into runs of letters and digits
("words": "Ukiyo-e" -> "ukiyo e", "don't" -> "don t"); the scores then differ from the COCO ones wherever
the two tokenisations differ. The metrics name the one used (caption_tokenizer).

Every number reported for an evaluated split, from its per-sample records (pure; docs/evaluation.md
defines each one). A metric of rows that the split does not have (no style row, no labelled row) is None
(null in JSON), not 0.0, which would read as a perfect loss or a failed accuracy.
"""

import functools
import importlib.util
import logging
import math
import os
import re
import shutil
import subprocess
from collections import defaultdict
from functools import lru_cache

from lavis_gated.styles import mentions_style

# the loss terms every split reports (tasks/losses.py computes them; a torch-free list, so that the commands
# that only read a run's files can use these metrics without importing torch)
TERMS = ("lm_loss", "style_hit_loss", "style_kl", "style_ce")


def weighted_total(terms, weights):
    """The loss from its terms (tensors or floats) and {term: weight}."""
    return sum(weights[name] * terms[name] for name in TERMS)


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


def style_word_hit_rate(records, style_names):
    """Share of predictions that name a style (styles.py: whole words, case, hyphens and brackets
    ignored), among the records whose reference answer names one; None when no reference names a style."""
    referenced = [r for r in records if mentions_style(r["answer"], style_names)]
    if not referenced:
        return None
    return sum(mentions_style(r["prediction"], style_names) for r in referenced) / len(referenced)


_WORD = re.compile(r"\w+")
TOKENIZERS = ("auto", "ptb", "words")


def tokenise(text) -> str:
    """Lower-cased words joined by single spaces: the input format the pycocoevalcap scorers expect."""
    return " ".join(_WORD.findall(str(text).lower()))


def _one_line(text) -> str:
    """PTBTokenizer reads one text per line; an empty line would shift the others."""
    return " ".join(str(text).split()) or "."


def ptb_tokenise(texts):
    """pycocoevalcap's PTBTokenizer over a list of texts (one Java run); lower-cased tokens, its punctuation
    removed, joined by spaces."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = {i: [{"caption": _one_line(t)}] for i, t in enumerate(texts)}
    tokenised = PTBTokenizer().tokenize(captions)
    return [tokenised[i][0] for i in range(len(texts))]


@functools.lru_cache(maxsize=1)
def ptb_runs() -> bool:
    """Whether pycocoevalcap's PTB tokenizer runs here (a Java runtime on PATH; checked once)."""
    if shutil.which("java") is None:
        return False
    try:
        return ptb_tokenise(["Ukiyo-e, don't."]) == ["ukiyo-e do n't"]
    except (OSError, subprocess.SubprocessError, ImportError, KeyError) as error:
        logging.warning("pycocoevalcap's PTB tokenizer does not run (%s): caption metrics use words", error)
        return False


def chosen_tokenizer(choice="auto") -> str:
    """ptb or words, for run.caption_tokenizer `choice`; ptb without Java is an error."""
    if choice not in TOKENIZERS:
        raise ValueError(f"caption tokenizer {choice!r}; it must be one of {list(TOKENIZERS)}")
    if choice == "words" or (choice == "auto" and not ptb_runs()):
        return "words"
    if not ptb_runs():
        raise RuntimeError(
            "run.caption_tokenizer is ptb but pycocoevalcap's PTB tokenizer does not run: install a Java "
            "runtime (e.g. apt-get install default-jre-headless) or set run.caption_tokenizer: auto"
        )
    return "ptb"


def caption_metrics(records, tokenizer="auto"):
    """records: dicts with prediction and answer (one reference each) -> bleu4, rougeL, cider (corpus
    level) and caption_tokenizer (ptb or words)."""
    # Imported here: training (and the GPU benchmark host, which has no pycocoevalcap) never needs them.
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    used = chosen_tokenizer(tokenizer)
    if not records:
        return {"bleu4": None, "rougeL": None, "cider": None, "caption_tokenizer": used}
    texts = [r["answer"] for r in records] + [r["prediction"] for r in records]
    tokens = ptb_tokenise(texts) if used == "ptb" else [tokenise(t) for t in texts]
    refs = {i: [tokens[i]] for i in range(len(records))}
    hyps = {i: [tokens[len(records) + i]] for i in range(len(records))}
    bleu, _ = Bleu(4).compute_score(refs, hyps, verbose=0)
    rouge, _ = Rouge().compute_score(refs, hyps)
    cider, _ = Cider().compute_score(refs, hyps)
    return {"bleu4": float(bleu[3]), "rougeL": float(rouge), "cider": float(cider), "caption_tokenizer": used}


def _mean_or_none(values):
    return sum(values) / len(values) if values else None


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else None


def split_metrics(records, weights, select_by, style_names, caption_tokenizer="auto"):
    """records: valid_step's dicts; weights: {term: weight}; select_by: what agg_metrics is;
    caption_tokenizer: caption_metrics' choice (auto, ptb or words)."""
    style_rows = [r for r in records if r["style_row"]]
    hit_rows = [r for r in style_rows if r["style_positions"] > 0]
    labelled = [r for r in records if r["style_id"] >= 0]
    m = {
        "num_samples": len(records),
        "num_unknown_style": sum(1 for r in records if r["style"] and r["style_id"] < 0),
        "num_style_rows": len(style_rows),
        "num_hit_rows": len(hit_rows),
        # weighted by answer tokens, as in training (and LAVIS): the mean over every answer token of the split
        "lm_loss": _ratio(
            sum(r["lm_loss"] * r["lm_tokens"] for r in records), sum(r["lm_tokens"] for r in records)
        ),
        "style_hit_loss": _mean_or_none([r["style_hit_loss"] for r in hit_rows]),
        "style_kl": _mean_or_none([r["style_kl"] for r in style_rows]),
        "style_ce": _mean_or_none([r["style_ce"] for r in labelled]),
        "style_hit_rate": _ratio(
            sum(r["style_hits"] for r in style_rows), sum(r["style_positions"] for r in style_rows)
        ),
        "style_word_hit_rate": style_word_hit_rate(records, style_names),
        "style_head_acc": _mean_or_none(
            [float(r["style_head_prediction"] == r["style_id"]) for r in labelled]
        ),
    }
    # a term that covers no row adds nothing to the loss, as in training
    m["loss"] = weighted_total({term: m[term] or 0.0 for term in TERMS}, weights) if records else None
    if not weights["style_ce"]:
        del m["style_ce"]  # not trained: the style head is random
    m.update(answer_metrics(records))
    m.update(caption_metrics(records, caption_tokenizer))
    if select_by == "loss":
        m["agg_metrics"] = None if m["loss"] is None else 1.0 / (1.0 + m["loss"])
    else:
        m["agg_metrics"] = m[select_by]
    if m["loss"] is None or not math.isfinite(m["loss"]):
        m["agg_metrics"] = None  # a NaN loss means blown-up weights, whatever their answers score
    elif m["agg_metrics"] is not None and not math.isfinite(m["agg_metrics"]):
        m["agg_metrics"] = None
    return m

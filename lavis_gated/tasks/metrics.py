"""Answer metrics: exact match and VQA accuracy, overall and per question type; style names in answers.

vqa_acc normalises answers exactly as LAVIS's VQA evaluation does (lavis/common/vqa_tools/vqa_eval.py,
VQAEval.processPunctuation then processDigitArticle: punctuation, periods, number words, articles,
contractions; this module calls those methods), then matches the prediction against the one reference answer,
normalised the same way, as LAVIS's GQA task does for single-reference data. It is not the VQAv2 accuracy
min(1, matches among 10 annotators / 3), which needs several references per question (docs/evaluation.md).

Text metrics over generated text, against every reference of an item: BLEU-1 to 4, METEOR, ROUGE-L and
CIDEr (and SPICE where it runs) with pycocoevalcap's own scorers, as COCO caption evaluation computes them.

The COCO evaluation tokenises with pycocoevalcap's PTBTokenizer (the Stanford PTB tokenizer; it runs Java):
lower case, "don't" -> "do n't", "Ukiyo-e" stays one token, "." "," "?" "-" and quotes dropped, and brackets
kept as the tokens -lrb- / -rrb- (its punctuation list spells them in upper case). That is used when a Java
runtime runs ("ptb"). Without Java each text is lower-cased and split into runs of letters and digits
("words": "Ukiyo-e" -> "ukiyo e", "don't" -> "don t"); the scores then differ from the COCO ones wherever
the two tokenisations differ. The metrics name the one used (caption_tokenizer).

METEOR is pycocoevalcap's Meteor (its meteor-1.5.jar; Java): one process per Python process, started on first
use (it loads its paraphrase tables: about 25 s on two busy cores) and reused. SPICE needs Stanford CoreNLP
models that pycocoevalcap downloads on first use; offline, without them, it is not computed. A metric that
cannot run is None and named, with the reason, in `not_computed`.

Every number reported for an evaluated split, from its per-sample records (pure; docs/evaluation.md
defines each one). A metric of rows that the split does not have (no probed row, no labelled row) is None
(null in JSON), not 0.0, which would read as a perfect loss or a failed accuracy.

Labels made by the style CNN (a style table of its pseudo-labels: style_source "cnn") are no ground truth:
accuracies against them are named for what they are, *_agreement_with_style_table, and where the style head
starts from that same CNN's classifier, its agreement measures the CNN agreeing with itself.
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

from lavis_gated.styles import find_style_spans, mentions_style, style_words

# the loss terms every split reports (tasks/losses.py computes them; a torch-free list, so that the commands
# that only read a run's files can use these metrics without importing torch)
TERMS = ("lm_loss", "style_name_loss", "style_kl", "style_ce")


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


def any_style_word_rate(records, style_names):
    """Share of predictions that name any style (styles.py: whole words, case, hyphens and
    brackets ignored), among the records whose reference answer names one; None when no reference names a
    style. Any style counts, the wrong one too: a rate of style talk, not of correct styles."""
    referenced = [r for r in records if mentions_style(r["answer"], style_names)]
    if not referenced:
        return None
    return sum(mentions_style(r["prediction"], style_names) for r in referenced) / len(referenced)


def style_naming_rates(records):
    """(rate, {style: rate}): the share of generated texts that name their image's own style (record "style",
    a normalised label; styles.py's whole-word match), over the records with a style, and per
    style; (None, {}) when no record has one. What a caption says of its image's style."""
    by_style = defaultdict(list)
    for r in records:
        if r["style"]:
            by_style[r["style"]].append(mentions_style(r["prediction"], [r["style"]]))
    named = [hit for hits in by_style.values() for hit in hits]
    if not named:
        return None, {}
    return sum(named) / len(named), {style: sum(h) / len(h) for style, h in sorted(by_style.items())}


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


@functools.lru_cache(maxsize=1)
def _meteor():
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def meteor_problem():
    """None when pycocoevalcap's METEOR runs here, else why it does not."""
    if shutil.which("java") is None:
        return "needs a Java runtime (none on PATH)"
    try:
        _meteor()
    except (OSError, subprocess.SubprocessError, ImportError) as error:
        return f"pycocoevalcap's Meteor did not start ({error})"
    return None


def spice_problem():
    """None when pycocoevalcap's SPICE can run offline here, else why not."""
    if shutil.which("java") is None:
        return "needs a Java runtime (none on PATH)"
    try:
        from pycocoevalcap.spice import spice
    except ImportError as error:
        return f"pycocoevalcap's SPICE does not import ({error})"
    lib = os.path.join(os.path.dirname(spice.__file__), "lib")
    if not os.path.isfile(os.path.join(lib, "stanford-corenlp-3.6.0.jar")):
        return (
            "needs Stanford CoreNLP 3.6.0 in pycocoevalcap/spice/lib, which pycocoevalcap downloads on first "
            "use (not offline)"
        )
    return None


TEXT_SCORES = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rougeL", "cider")


def text_scores(references, predictions, tokenizer="auto", meteor=False, spice=False):
    """references: per item its reference texts (one or more); predictions: per item one text -> (scores,
    not_computed, tokenizer used). scores: TEXT_SCORES (corpus level; meteor None unless asked and Java runs)
    and, with spice, "spice"; not_computed: {metric: why} for those asked for that cannot run."""
    # Imported here: training (and the GPU benchmark host, which has no pycocoevalcap) never needs them.
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    used = chosen_tokenizer(tokenizer)
    scores = {name: None for name in TEXT_SCORES + (("spice",) if spice else ())}
    problems = {"meteor": meteor_problem() if meteor else None, "spice": spice_problem() if spice else None}
    not_computed = {name: why for name, why in problems.items() if why}
    if not predictions:
        return scores, not_computed, used
    texts = [t for refs in references for t in refs] + list(predictions)
    tokens = ptb_tokenise(texts) if used == "ptb" else [tokenise(t) for t in texts]
    refs, start = {}, 0
    for i, item in enumerate(references):
        refs[i], start = tokens[start : start + len(item)], start + len(item)
    hyps = {i: [tokens[start + i]] for i in range(len(predictions))}
    bleu, _ = Bleu(4).compute_score(refs, hyps, verbose=0)
    scores.update({f"bleu{n + 1}": float(bleu[n]) for n in range(4)})
    scores["rougeL"] = float(Rouge().compute_score(refs, hyps)[0])
    scores["cider"] = float(Cider().compute_score(refs, hyps)[0])
    if meteor and "meteor" not in not_computed:
        scores["meteor"] = float(_meteor().compute_score(refs, hyps)[0])
    if spice and "spice" not in not_computed:
        from pycocoevalcap.spice.spice import Spice

        scores["spice"] = float(Spice().compute_score(refs, hyps)[0])
    return scores, not_computed, used


def caption_metrics(records, tokenizer="auto", meteor=False, prefix="", spice=False):
    """records: dicts with prediction and answer, and "references" (all of the item's) where it has several
    -> TEXT_SCORES named with `prefix` (corpus level), caption_tokenizer (ptb or words) and not_computed
    ({prefixed metric: why}). meteor / spice: compute them (the task passes run.meteor)."""
    references = [r.get("references") or [r["answer"]] for r in records]
    scores, not_computed, used = text_scores(
        references, [r["prediction"] for r in records], tokenizer, meteor, spice
    )
    return {
        **{prefix + name: value for name, value in scores.items()},
        "caption_tokenizer": used,
        "not_computed": {prefix + name: why for name, why in not_computed.items()},
    }


def _mean_or_none(values):
    return sum(values) / len(values) if values else None


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else None


def is_caption(row):
    """A caption row (or its record): its question is blank (text_inputs.row_texts' rule); a row without a
    "question" key is not one."""
    question = row.get("question")
    return question is not None and not str(question).strip()


CNN_SOURCE = "cnn"  # datasets/style_sources: labels the style CNN predicted
ACCURACY_KEYS = ("probe_style_acc", "style_head_acc")


def label_source(records):
    """Where the labelled records' styles come from: one source name, "mixed: a, b", or None unlabelled."""
    sources = sorted({r.get("style_source") or "unknown" for r in records if r["style_id"] >= 0})
    if not sources:
        return None
    return sources[0] if len(sources) == 1 else "mixed: " + ", ".join(sources)


def accuracy_name(key, source):
    """probe_style_acc -> probe_style_agreement_with_style_table where any label is the CNN's."""
    if source and CNN_SOURCE in source.replace("mixed: ", "").split(", "):
        return key[: -len("_acc")] + "_agreement_with_style_table"
    return key


def split_metrics(
    records,
    weights,
    select_by,
    style_names,
    caption_tokenizer="auto",
    style_question_types=("style",),
    meteor=False,
):
    """records: valid_step's dicts; weights: {term: weight}; select_by: what agg_metrics is;
    caption_tokenizer: caption_metrics' choice (auto, ptb or words); style_question_types: the question
    types that ask for a style (style_answer_label_rate); meteor: compute METEOR (run.meteor).

    Question rows give the answer metrics (em, vqa_acc, bleu1-4, meteor, rougeL, cider); caption rows the
    caption metrics (caption_*: each image's one caption against all its references), and the rate at which
    captions name their image's style, overall and per style. The style probe's metrics cover the probed
    rows of either kind."""
    probed = [r for r in records if r["probe_row"]]
    labelled = [r for r in records if r["style_id"] >= 0]
    source = label_source(records)
    m = {
        "num_samples": len(records),
        "num_unknown_style": sum(1 for r in records if r["style"] and r["style_id"] < 0),
        "num_probe_rows": len(probed),
        "style_label_source": source,
        # weighted by answer tokens, as in training (and LAVIS): the mean over every answer token of the split
        "lm_loss": _ratio(
            sum(r["lm_loss"] * r["lm_tokens"] for r in records), sum(r["lm_tokens"] for r in records)
        ),
        "style_name_loss": _mean_or_none([r["style_name_loss"] for r in probed]),
        "style_kl": _mean_or_none([r["style_kl"] for r in probed]),
        "style_ce": _mean_or_none([r["style_ce"] for r in labelled]),
        "probe_style_acc": _mean_or_none([float(r["probe_prediction"] == r["style_id"]) for r in probed]),
        "style_answer_label_rate": style_answer_label_rate(
            records, style_names, set(style_question_types or ())
        ),
        "any_style_token_rate": _ratio(
            sum(r["style_hits"] for r in records), sum(r["style_positions"] for r in records)
        ),
        "any_style_word_rate": any_style_word_rate(records, style_names),
        "style_head_acc": _mean_or_none(
            [float(r["style_head_prediction"] == r["style_id"]) for r in labelled]
        ),
    }
    # a term that covers no row adds nothing to the loss, as in training
    m["loss"] = weighted_total({term: m[term] or 0.0 for term in TERMS}, weights) if records else None
    if not weights["style_ce"]:
        del m["style_ce"]  # not trained: the style head is random
    for key in ACCURACY_KEYS:
        m[accuracy_name(key, source)] = m.pop(key)
    answers = [r for r in records if not is_caption(r)]
    captions = [r for r in records if is_caption(r)]
    m["num_caption_rows"] = len(captions)
    m.update(answer_metrics(answers))
    answer_text = caption_metrics(answers, caption_tokenizer, meteor)
    caption_text = caption_metrics(captions, caption_tokenizer, meteor, prefix="caption_", spice=True)
    m.update(answer_text)
    m.update(caption_text)
    m["not_computed"] = {**answer_text["not_computed"], **caption_text["not_computed"]}
    m["caption_style_naming_rate"], m["caption_style_naming_rate_by_style"] = style_naming_rates(captions)
    if select_by == "loss":
        m["agg_metrics"] = None if m["loss"] is None else 1.0 / (1.0 + m["loss"])
    else:
        m["agg_metrics"] = m[accuracy_name(select_by, source) if select_by in ACCURACY_KEYS else select_by]
    if m["loss"] is None or not math.isfinite(m["loss"]):
        m["agg_metrics"] = None  # a NaN loss means blown-up weights, whatever their answers score
    elif m["agg_metrics"] is not None and not math.isfinite(m["agg_metrics"]):
        m["agg_metrics"] = None
    return m

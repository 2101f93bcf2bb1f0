"""Text metrics over generated text, against every reference of an item: BLEU-1 to 4, METEOR, ROUGE-L and
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
"""

import functools
import logging
import os
import re
import shutil
import subprocess

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

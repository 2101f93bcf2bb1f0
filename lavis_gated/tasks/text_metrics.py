"""Caption metrics over generated text: BLEU-4, ROUGE-L and CIDEr with pycocoevalcap's own scorers.

The COCO evaluation tokenises with pycocoevalcap's PTBTokenizer (the Stanford PTB tokenizer; it runs Java):
lower case, "don't" -> "do n't", "Ukiyo-e" stays one token, "." "," "?" "-" and quotes dropped, and brackets
kept as the tokens -lrb- / -rrb- (its punctuation list spells them in upper case). That is used when a Java
runtime runs ("ptb"). Without Java each text is lower-cased and split into runs of letters and digits
("words": "Ukiyo-e" -> "ukiyo e", "don't" -> "don t"); the scores then differ from the COCO ones wherever
the two tokenisations differ. The metrics name the one used (caption_tokenizer).
"""

import functools
import logging
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

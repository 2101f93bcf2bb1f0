"""Caption metrics over generated text: BLEU-4, ROUGE-L and CIDEr with pycocoevalcap's own scorers.

The COCO evaluation tokenises with the Stanford PTB tokenizer, which needs Java. Here each text is
lower-cased and split into runs of letters and digits (punctuation dropped, as the PTB step does), so
the scores match the COCO ones up to tokenisation details (e.g. "don't" is "don t", not "do n't").
"""

import re

_WORD = re.compile(r"\w+")


def tokenise(text) -> str:
    """Lower-cased words joined by single spaces: the input format the pycocoevalcap scorers expect."""
    return " ".join(_WORD.findall(str(text).lower()))


def caption_metrics(records):
    """records: dicts with prediction and answer (one reference each) -> bleu4, rougeL, cider (corpus
    level)."""
    # Imported here: training (and the GPU benchmark host, which has no pycocoevalcap) never needs them.
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if not records:
        return {"bleu4": 0.0, "rougeL": 0.0, "cider": 0.0}
    refs = {i: [tokenise(r["answer"])] for i, r in enumerate(records)}
    hyps = {i: [tokenise(r["prediction"])] for i, r in enumerate(records)}
    bleu, _ = Bleu(4).compute_score(refs, hyps, verbose=0)
    rouge, _ = Rouge().compute_score(refs, hyps)
    cider, _ = Cider().compute_score(refs, hyps)
    return {"bleu4": float(bleu[3]), "rougeL": float(rouge), "cider": float(cider)}

"""Which rows the style probe scores (the KL and naming terms' rows), and how many train rows each term covers
(the start-up report).

The probe applies to every row with a style label the vocabulary knows, whatever its question: real ArtQuest
asks no style question (artist, school, timeframe, type, technique, title). Its cost is one more Q-Former and
OPT pass per probed row, so in training run.style_probe_share (a share of each batch's labelled rows, at
least one) and run.style_probe_max_rows (a count) bound it; the rows are drawn at random, so over an epoch
every labelled row is probed about that share of the time. Evaluation probes every labelled row.
"""

import math

import torch

PROBE_TERMS = ("style_name_loss", "style_kl")  # the terms computed on the probe's rows


def probe_rows(style_ids, share=1.0, max_rows=None, generator=None) -> list[bool]:
    """Per row, whether the probe scores it: ceil(share x labelled rows), at most max_rows (None: no cap),
    drawn at random among the labelled rows (style id >= 0; style_ids: ints)."""
    labelled = [i for i, s in enumerate(style_ids) if int(s) >= 0]
    count = math.ceil(share * len(labelled)) if labelled and share > 0 else 0
    if max_rows is not None:
        count = min(count, max_rows)
    out = [False] * len(style_ids)
    if count >= len(labelled):
        chosen = labelled
    else:
        order = torch.randperm(len(labelled), generator=generator).tolist()
        chosen = [labelled[i] for i in order[:count]]
    for i in chosen:
        out[i] = True
    return out


def coverage(labelled, token_positions):
    """{term: train rows it covers} from per-row lists: labelled (the probe can score the row: the KL,
    naming and CE terms), token_positions (answer tokens that identify some style: any_style_token_rate's)."""
    return {
        "lm_loss": len(labelled),
        "style_name_loss": sum(labelled),
        "style_kl": sum(labelled),
        "style_ce": sum(labelled),
        "any_style_token_rows": sum(1 for n in token_positions if n > 0),
    }


def uncovered_terms(covered, weights):
    """The weighted terms that cover no row: a misconfiguration (their metrics would be null)."""
    return [term for term, count in covered.items() if weights.get(term, 0) > 0 and count == 0]

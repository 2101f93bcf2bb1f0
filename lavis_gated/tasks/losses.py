"""The style_captioning loss: its per-sample parts, and the weighted total, written once.

total = lm_weight * LM + style_name_weight * CE(probe's name distribution, label)
        + style_kl_weight * KL(teacher || student) + style_ce_weight * CE(image style head, label)

The naming and KL terms come from the style probe (models/style_probe.py) on the rows probe_rows
picks; the KL's teacher is run.style_kl_teacher (detached unless run.style_kl_detach is false). The same
`weighted_total` combines a training batch's terms and a split's evaluation means. Every term is normalised
over the global batch (answer tokens for the LM term, the rows each style term covers for the others), so N
processes train exactly like one process with N times the batch. docs/evaluation.md defines each term.

Pure functions for the LM loss per sample and the style regularisers.

Shapes: logits (B, T, V) predict targets (B, T); targets are -100 except on answer tokens; S styles.

Which rows the style probe scores (the KL and naming terms' rows), and how many train rows each term covers
(the start-up report).

The probe applies to every row with a style label the vocabulary knows, whatever its question: real ArtQuest
asks no style question (artist, school, timeframe, type, technique, title). Its cost is one more row of the
Q-Former's and OPT's pass per probed row, so in training run.style_probe_share (each labelled row is probed
with that probability, drawn anew each epoch by a hash of the row's id) and run.style_probe_max_rows (a count
per batch) bound it. Evaluation probes every labelled row.
"""

import hashlib

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lavis.common.dist_utils import get_world_size, is_dist_avail_and_initialized

from lavis_gated.models.text_inputs import batch_size_of
from lavis_gated.tasks.metrics import weighted_total


def weights_of(config):
    """{term: weight} from a TaskConfig."""
    return {
        "lm_loss": config.lm_weight,
        "style_name_loss": config.style_name_weight,
        "style_kl": config.style_kl_weight,
        "style_ce": config.style_ce_weight,
    }


def per_sample_parts(model, samples, config, probe=True, seed=0):
    """Forward once (with the style probe on some labelled rows); every loss part per sample (B,) plus the
    metric ingredients.

    config: the TaskConfig (KL temperature, teacher, detach; the probe's share and row cap); probe: whether
    to run the style probe at all (extra work, skipped when its terms are unweighted in training); share and
    cap apply in training only: evaluation probes every labelled row. seed: the run's, with samples["epoch"]
    it names probe_rows' draw.
    """
    core = model.module if hasattr(model, "module") else model
    size = batch_size_of(samples)  # question rows, caption rows (LAVIS's too: no "answer" key) or both
    style_ids = core.vocabulary.ids(samples.get("style") or [None] * size)
    rows = [False] * size
    if probe:
        training = core.training
        rows = probe_rows(
            style_ids,
            config.style_probe_share if training else 1.0,
            config.style_probe_max_rows if training else None,
            keys=row_keys(samples),
            draw=f"{seed}|{samples.get('epoch', 0)}",
        )
    out = model({**samples, "style_probe_rows": rows} if any(rows) else samples)
    style_ids, logits, targets = out["style_ids"], out["logits"], out["targets"]
    token_set = core.style_token_set
    positions = style_target_mask(targets, token_set)
    hits, counted = argmax_style_hits(logits, positions, token_set)
    rows = torch.tensor(rows, dtype=torch.bool, device=style_ids.device)
    image_logits = out["image_style_logits"].float()
    probe_log_probs = out.get("probe_name_log_probs")
    if probe_log_probs is not None:
        style_kl = teacher_kl(
            probe_log_probs,
            image_logits,
            config.style_kl_temperature,
            config.style_kl_teacher,
            config.style_kl_detach,
        )
        name_loss = naming_loss(probe_log_probs, style_ids)
        probe_prediction = probe_log_probs.argmax(-1)
    else:
        style_kl = name_loss = image_logits.new_zeros(size)
        probe_prediction = torch.full_like(style_ids, -1)
    return {
        "lm_loss": lm_loss_per_sample(logits, targets),
        "batch_lm_loss": out["loss"],
        "lm_tokens": answer_token_counts(targets),
        # 0 outside the probed rows: the batch means and the split metrics read the probed rows only
        "style_name_loss": name_loss * rows,
        "style_kl": style_kl * rows,
        "style_ce": style_cross_entropy(image_logits, style_ids),
        "probe_rows": rows,
        "probe_prediction": torch.where(rows, probe_prediction, torch.full_like(probe_prediction, -1)),
        "style_ids": style_ids,
        "style_head_prediction": image_logits.argmax(-1),
        "style_hits": hits,
        "style_positions": counted,
    }


def batch_terms(parts, weights, shares=None):
    """Scalar losses of a batch: each term averaged over the rows it applies to, and their weighted total.

    shares (from global_batch_shares) rescale each rank-local mean into this rank's part of the global
    batch's mean."""
    labelled = parts["style_ids"] >= 0
    terms = {
        "lm_loss": parts["batch_lm_loss"],
        "style_name_loss": masked_mean(parts["style_name_loss"], parts["probe_rows"]),
        "style_kl": masked_mean(parts["style_kl"], parts["probe_rows"]),
        "style_ce": masked_mean(parts["style_ce"], labelled),
    }
    if shares is not None:
        terms = {k: v * shares[k] for k, v in terms.items()}
    terms["loss"] = weighted_total(terms, weights)
    return terms


def global_batch_shares(parts):
    """Per loss term, this rank's share of the global batch's counted rows (tokens for the LM term) times
    the world size; None in a single process.

    A rank-local mean times its share, with DDP averaging the gradients over ranks, gives the gradient of
    the mean over the whole global batch, however unevenly answer tokens or style rows fall on the ranks.
    """
    if not is_dist_avail_and_initialized():
        return None
    counts = torch.stack(
        [
            parts["lm_tokens"].sum(),
            parts["probe_rows"].sum(),
            parts["probe_rows"].sum(),
            (parts["style_ids"] >= 0).sum(),
        ]
    ).double()
    totals = counts.clone()
    dist.all_reduce(totals)
    share = (counts * get_world_size() / totals.clamp(min=1)).float()
    return {"lm_loss": share[0], "style_name_loss": share[1], "style_kl": share[2], "style_ce": share[3]}


# ---- pure functions of the terms ----

IGNORE = -100


def masked_mean(values, mask):
    """Mean of values (B,) over mask (B,) bool; 0 (still in the graph) when the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def lm_loss_per_sample(logits, targets):
    """(B,) token-mean cross-entropy over each sample's answer tokens."""
    token_loss = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
    valid = (targets != IGNORE).to(token_loss.dtype)
    return (token_loss * valid).sum(1) / valid.sum(1).clamp(min=1)


def answer_token_counts(targets):
    """(B,) answer tokens per sample (the end token included): the LM loss's weights."""
    return (targets != IGNORE).sum(1)


def style_target_mask(targets, style_token_ids):
    """(B, T) bool: the answer positions whose target token identifies a style (style_token_ids (K,)): where
    the any-style token rate looks (a metric only: it counts any style, not the label)."""
    return torch.isin(targets, style_token_ids)


def argmax_style_hits(logits, positions, style_token_ids):
    """(hits (B,), positions (B,)): how many of `positions` (B, T) have a style token as their argmax."""
    is_style = torch.isin(logits.argmax(-1), style_token_ids) & positions
    return is_style.sum(1), positions.sum(1)


def style_log_distribution(scores, temperature):
    """(B, S) log-softmax over styles of scores (B, S) / temperature: image style logits, or the style
    probe's log-probabilities of each style's name (models/style_probe.py)."""
    return F.log_softmax(scores.float() / temperature, -1)


def kl_divergence(log_p, log_q):
    """(B,) KL(p || q) for log-distributions over the last dimension."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


KL_TEACHERS = ("image", "probe")


def teacher_kl(probe_log_probs, image_logits, temperature, teacher="image", detach=True):
    """(B,) KL(teacher || student) between the probe's name distribution and the image style head's, both
    softmax(scores / temperature).

    teacher "image": the style head (trained on the labels by the CE term, started from the CNN's classifier)
    teaches the probe; "probe": the probe teaches the style head. detach: no gradient reaches the teacher, so
    an untrained side is never pulled toward the other; without it both sides move toward each other.
    probe_log_probs (B, S): log P(name) per style (models/style_probe.py); image_logits (B, S).
    """
    if teacher not in KL_TEACHERS:
        raise ValueError(f"run.style_kl_teacher is {teacher!r}; it must be one of {list(KL_TEACHERS)}")
    probe = style_log_distribution(probe_log_probs, temperature)
    image = style_log_distribution(image_logits, temperature)
    p, q = (image, probe) if teacher == "image" else (probe, image)
    return kl_divergence(p.detach() if detach else p, q)


def naming_loss(probe_log_probs, style_ids):
    """(B,) cross-entropy of the probe's name distribution (B, S) against the label (B,): it raises the
    label's name, and only the label's (naming another style is a miss); 0 where there is no label."""
    loss = F.cross_entropy(
        F.log_softmax(probe_log_probs.float(), -1), style_ids.clamp(min=0), reduction="none"
    )
    return loss * (style_ids >= 0).to(loss.dtype)


def style_cross_entropy(image_style_logits, style_ids):
    """(B,) cross-entropy of the image style head against the label; 0 where there is no label (id < 0)."""
    loss = F.cross_entropy(image_style_logits, style_ids.clamp(min=0), reduction="none")
    return loss * (style_ids >= 0).to(loss.dtype)


# ---- the probe's rows and the terms' coverage ----

PROBE_TERMS = ("style_name_loss", "style_kl")  # the terms computed on the probe's rows


def probe_rows(style_ids, share=1.0, max_rows=None, keys=None, draw="") -> list[bool]:
    """Per row, whether the probe scores it: each labelled row (style id >= 0; style_ids: ints) is drawn
    with probability `share`, on its own, so a batch probes share x its labelled rows on average at any batch
    size (a rule of "at least one per batch" would probe every labelled row of a small batch).

    keys: per row, a stable id (its question_id): the draw is then a hash of (draw, key), so a row is probed
    or not whichever process and batch it lands in (N processes train as one does); `draw` names the round
    (the run's seed and the epoch: another subset each epoch and seed). Without keys, torch's generator
    draws (then a batch skipped for a non-finite loss still moved the generator, unlike with keys).
    max_rows: at most this many, those with the lowest draws (None: no cap)."""
    labelled = [i for i, s in enumerate(style_ids) if int(s) >= 0]
    if keys is None:
        values = torch.rand(len(style_ids)).tolist()
    else:
        values = [_unit_hash(f"{draw}|{key}") for key in keys]
    chosen = sorted((values[i], i) for i in labelled if values[i] < share or share >= 1)
    if max_rows is not None:
        chosen = chosen[:max_rows]
    out = [False] * len(style_ids)
    for _, i in chosen:
        out[i] = True
    return out


def _unit_hash(text):
    """A number in [0, 1) from text, the same in every process and run (unlike Python's hash())."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def row_keys(samples):
    """The batch's stable row ids for probe_rows: question_id (ArtQuest and caption rows), else LAVIS's
    instance_id; None where the batch has neither."""
    for key in ("question_id", "instance_id"):
        if samples.get(key) is not None:
            return [str(v) for v in samples[key]]
    return None


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

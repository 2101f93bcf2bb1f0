"""The style_captioning loss: its per-sample parts, and the weighted total, written once.

total = lm_weight * LM + style_name_weight * CE(probe's name distribution, label)
        + style_kl_weight * KL(teacher || student) + style_ce_weight * CE(image style head, label)

The naming and KL terms come from the style probe (models/style_probe.py) on the rows style_rows.probe_rows
picks; the KL's teacher is run.style_kl_teacher (detached unless run.style_kl_detach is false). The same
`weighted_total` combines a training batch's terms and a split's evaluation means. Every term is normalised
over the global batch (answer tokens for the LM term, the rows each style term covers for the others), so N
processes train exactly like one process with N times the batch. docs/evaluation.md defines each term.
"""

import torch
import torch.distributed as dist
from lavis.common.dist_utils import get_world_size, is_dist_avail_and_initialized

from lavis_gated.tasks import style_losses
from lavis_gated.tasks.style_rows import probe_rows

TERMS = ("lm_loss", "style_name_loss", "style_kl", "style_ce")


def weights_of(config):
    """{term: weight} from a TaskConfig."""
    return {
        "lm_loss": config.lm_weight,
        "style_name_loss": config.style_name_weight,
        "style_kl": config.style_kl_weight,
        "style_ce": config.style_ce_weight,
    }


def weighted_total(terms, weights):
    """The loss from its terms (tensors or floats) and {term: weight}."""
    return sum(weights[name] * terms[name] for name in TERMS)


def per_sample_parts(model, samples, config, probe=True):
    """Forward once (with the style probe on some labelled rows); every loss part per sample (B,) plus the
    metric ingredients.

    config: the TaskConfig (KL temperature, teacher, detach; the probe's share and row cap); probe: whether
    to run the style probe at all (extra work, skipped when its terms are unweighted in training); share and
    cap apply in training only: evaluation probes every labelled row.
    """
    core = model.module if hasattr(model, "module") else model
    size = len(samples["answer"])
    style_ids = core.vocabulary.ids(samples.get("style") or [None] * size)
    rows = [False] * size
    if probe:
        training = core.training
        rows = probe_rows(
            style_ids,
            config.style_probe_share if training else 1.0,
            config.style_probe_max_rows if training else None,
        )
    out = model({**samples, "style_probe_rows": rows} if any(rows) else samples)
    style_ids, logits, targets = out["style_ids"], out["logits"], out["targets"]
    token_set = core.style_token_set
    positions = style_losses.style_target_mask(targets, token_set)
    hits, counted = style_losses.argmax_style_hits(logits, positions, token_set)
    rows = torch.tensor(rows, dtype=torch.bool, device=style_ids.device)
    image_logits = out["image_style_logits"].float()
    probe_log_probs = out.get("probe_name_log_probs")
    if probe_log_probs is not None:
        style_kl = style_losses.teacher_kl(
            probe_log_probs,
            image_logits,
            config.style_kl_temperature,
            config.style_kl_teacher,
            config.style_kl_detach,
        )
        name_loss = style_losses.naming_loss(probe_log_probs, style_ids)
        probe_prediction = probe_log_probs.argmax(-1)
    else:
        style_kl = name_loss = image_logits.new_zeros(size)
        probe_prediction = torch.full_like(style_ids, -1)
    return {
        "lm_loss": style_losses.lm_loss_per_sample(logits, targets),
        "batch_lm_loss": out["loss"],
        "lm_tokens": style_losses.answer_token_counts(targets),
        # 0 outside the probed rows: the batch means and the split metrics read the probed rows only
        "style_name_loss": name_loss * rows,
        "style_kl": style_kl * rows,
        "style_ce": style_losses.style_cross_entropy(image_logits, style_ids),
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
        "style_name_loss": style_losses.masked_mean(parts["style_name_loss"], parts["probe_rows"]),
        "style_kl": style_losses.masked_mean(parts["style_kl"], parts["probe_rows"]),
        "style_ce": style_losses.masked_mean(parts["style_ce"], labelled),
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

"""The style_captioning loss: its per-sample parts, and the weighted total, written once.

total = lm_weight * LM + style_hit_weight * (1 - soft style hit rate) + style_kl_weight * KL(text || image)
        + style_ce_weight * CE(image style head, style label)

The same `weighted_total` combines a training batch's terms and a split's evaluation means. Every term is
normalised over the global batch (answer tokens for the LM term, the rows each style term covers for the
others), so N processes train exactly like one process with N times the batch. docs/evaluation.md defines
each term.
"""

import torch
import torch.distributed as dist
from lavis.common.dist_utils import get_world_size, is_dist_avail_and_initialized

from lavis_gated.models.text_inputs import row_texts
from lavis_gated.tasks import style_losses

TERMS = ("lm_loss", "style_hit_loss", "style_kl", "style_ce")


def weights_of(config):
    """{term: weight} from a TaskConfig."""
    return {
        "lm_loss": config.lm_weight,
        "style_hit_loss": config.style_hit_weight,
        "style_kl": config.style_kl_weight,
        "style_ce": config.style_ce_weight,
    }


def weighted_total(terms, weights):
    """The loss from its terms (tensors or floats) and {term: weight}."""
    return sum(weights[name] * terms[name] for name in TERMS)


def per_sample_parts(model, samples, row_rule, kl_temperature=1.0, score_names=True):
    """Forward once; every loss part per sample (B,) plus the metric ingredients.

    row_rule: a style_rows.StyleRowRule; score_names: whether to compute the KL's text side (the language
    model's log-probability of each style's name, for the style rows: extra work, skipped when unweighted).
    """
    core = model.module if hasattr(model, "module") else model
    _, targets = row_texts(samples, training=True)  # answers, or captions (LAVIS's caption rows too)
    size = len(targets)
    names = core.vocabulary.names
    rows = row_rule.rows(
        core.vocabulary.ids(samples.get("style") or [None] * size),
        samples.get("question_type") or [""] * size,
        targets,
        names,
    )
    out = model({**samples, "style_name_rows": rows} if score_names else samples)
    style_ids, logits, targets = out["style_ids"], out["logits"], out["targets"]
    style_set = core.style_token_set
    positions = style_losses.style_target_mask(targets, style_set)
    hit_rate = style_losses.soft_style_hit_rate(logits, positions, style_set)
    hits, counted = style_losses.argmax_style_hits(logits, positions, style_set)
    rows = torch.tensor(rows, dtype=torch.bool, device=style_ids.device)
    image_log_probs = style_losses.style_log_distribution(out["image_style_logits"], kl_temperature)
    if out.get("style_name_log_probs") is not None:
        text_log_probs = style_losses.style_log_distribution(out["style_name_log_probs"], kl_temperature)
        style_kl = style_losses.kl_divergence(text_log_probs, image_log_probs)
    else:
        style_kl = image_log_probs.new_zeros(size)
    return {
        "lm_loss": style_losses.lm_loss_per_sample(logits, targets),
        "batch_lm_loss": out["loss"],
        "lm_tokens": style_losses.answer_token_counts(targets),
        "style_hit_loss": 1.0 - hit_rate,
        "style_kl": style_kl,
        "style_ce": style_losses.style_cross_entropy(out["image_style_logits"].float(), style_ids),
        "style_rows": rows,
        "hit_rows": rows & (counted > 0),
        "style_ids": style_ids,
        "style_head_prediction": out["image_style_logits"].argmax(-1),
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
        "style_hit_loss": style_losses.masked_mean(parts["style_hit_loss"], parts["hit_rows"]),
        "style_kl": style_losses.masked_mean(parts["style_kl"], parts["style_rows"]),
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
            parts["hit_rows"].sum(),
            parts["style_rows"].sum(),
            (parts["style_ids"] >= 0).sum(),
        ]
    ).double()
    totals = counts.clone()
    dist.all_reduce(totals)
    share = (counts * get_world_size() / totals.clamp(min=1)).float()
    return {"lm_loss": share[0], "style_hit_loss": share[1], "style_kl": share[2], "style_ce": share[3]}

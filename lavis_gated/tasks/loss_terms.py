"""The style_captioning loss: its per-sample parts, and the weighted total, written once.

total = lm_weight * LM + style_hit_weight * (1 - soft style hit rate) + style_kl_weight * symmetric KL
        + style_ce_weight * CE(image style head, style label)

The same `weighted_total` combines a training batch's terms and a split's evaluation means. Every term is
normalised over the global batch (answer tokens for the LM term, rows for the style terms), so N processes
train exactly like one process with N times the batch.
"""

import torch
import torch.distributed as dist
from lavis.common.dist_utils import get_world_size, is_dist_avail_and_initialized

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


def style_rows(style_ids, question_types, style_question_types):
    """(B,) bool: rows the hit-rate and KL terms apply to (labelled, and of a style question type if set)."""
    rows = style_ids >= 0
    if style_question_types is not None:
        chosen = torch.tensor(
            [t in style_question_types for t in question_types], dtype=torch.bool, device=rows.device
        )
        rows = rows & chosen
    return rows


def per_sample_parts(model, samples, style_question_types=None):
    """Forward once; every loss part per sample (B,) plus the metric ingredients."""
    out = model(samples)
    core = model.module if hasattr(model, "module") else model
    style_ids = out["style_ids"]
    word_mask = style_losses.answer_word_mask(out["targets"], core.eos_token_id)
    style_set = core.style_token_set
    hit_rate = style_losses.soft_style_hit_rate(out["logits"], word_mask, style_set)
    text_log_probs = style_losses.text_style_log_probs(
        out["logits"], word_mask, core.style_tokens, core.style_token_mask
    )
    image_log_probs = torch.log_softmax(out["image_style_logits"].float(), -1)
    hits, positions = style_losses.argmax_style_hits(out["logits"], word_mask, style_set)
    question_types = samples.get("question_type", [""] * len(style_ids))
    return {
        "lm_loss": style_losses.lm_loss_per_sample(out["logits"], out["targets"]),
        "batch_lm_loss": out["loss"],
        "lm_tokens": (out["targets"] != style_losses.IGNORE).sum(),
        "style_hit_loss": 1.0 - hit_rate,
        "style_kl": style_losses.symmetric_kl(image_log_probs, text_log_probs),
        "style_ce": style_losses.style_cross_entropy(out["image_style_logits"].float(), style_ids),
        "style_rows": style_rows(style_ids, question_types, style_question_types),
        "style_ids": style_ids,
        "style_head_prediction": out["image_style_logits"].argmax(-1),
        "style_hits": hits,
        "style_positions": positions,
    }


def batch_terms(parts, weights, shares=None):
    """Scalar losses of a batch: each term averaged over the rows it applies to, and their weighted total.

    shares (from global_batch_shares) rescale each rank-local mean into this rank's part of the global
    batch's mean."""
    rows, labelled = parts["style_rows"], parts["style_ids"] >= 0
    terms = {
        "lm_loss": parts["batch_lm_loss"],
        "style_hit_loss": style_losses.masked_mean(parts["style_hit_loss"], rows),
        "style_kl": style_losses.masked_mean(parts["style_kl"], rows),
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
        [parts["lm_tokens"], parts["style_rows"].sum(), (parts["style_ids"] >= 0).sum()]
    ).double()
    totals = counts.clone()
    dist.all_reduce(totals)
    share = (counts * get_world_size() / totals.clamp(min=1)).float()
    return {"lm_loss": share[0], "style_hit_loss": share[1], "style_kl": share[1], "style_ce": share[2]}

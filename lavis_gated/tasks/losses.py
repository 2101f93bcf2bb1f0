"""The style_captioning loss: its per-sample parts, and the weighted total, written once.

total = lm_weight * LM + style_hit_weight * (1 - soft style hit rate) + style_kl_weight * KL(text || image)
        + style_ce_weight * CE(image style head, style label)

The same `weighted_total` combines a training batch's terms and a split's evaluation means. Every term is
normalised over the global batch (answer tokens for the LM term, the rows each style term covers for the
others), so N processes train exactly like one process with N times the batch. docs/evaluation.md defines
each term.

Pure functions for the LM loss per sample and the style regularisers.

Shapes: logits (B, T, V) predict targets (B, T); targets are -100 except on answer tokens; S styles.

Which rows the style hit-rate and KL terms apply to (run.style_rows), and how many train rows each term
covers (the start-up report).

Rules; every one needs a style label the vocabulary knows:
- question_types: rows whose question_type is in run.style_question_types (null: every labelled row);
- answer_names_style: rows whose reference answer names a style of the vocabulary (styles.py), of
  the listed question types if run.style_question_types is set: the rule for data without a `style` question
  type, such as ArtQuest, whose `school` answers are often style names;
- all_labelled: every labelled row.
The hit-rate term then counts only the answer positions whose target token identifies a style
(styles.py), so a style row whose reference has no such token adds nothing to it.
"""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lavis.common.dist_utils import get_world_size, is_dist_avail_and_initialized

from lavis_gated.styles import NO_STYLE, mentions_style
from lavis_gated.tasks.metrics import weighted_total


def weights_of(config):
    """{term: weight} from a TaskConfig."""
    return {
        "lm_loss": config.lm_weight,
        "style_hit_loss": config.style_hit_weight,
        "style_kl": config.style_kl_weight,
        "style_ce": config.style_ce_weight,
    }


def per_sample_parts(model, samples, row_rule, kl_temperature=1.0, score_names=True):
    """Forward once; every loss part per sample (B,) plus the metric ingredients.

    row_rule: a StyleRowRule; score_names: whether to compute the KL's text side (the language
    model's log-probability of each style's name, for the style rows: extra work, skipped when unweighted).
    """
    core = model.module if hasattr(model, "module") else model
    size = len(samples["answer"])
    names = core.vocabulary.names
    rows = row_rule.rows(
        core.vocabulary.ids(samples.get("style") or [None] * size),
        samples.get("question_type") or [""] * size,
        samples["answer"],
        names,
    )
    out = model({**samples, "style_name_rows": rows} if score_names else samples)
    style_ids, logits, targets = out["style_ids"], out["logits"], out["targets"]
    style_set = core.style_token_set
    positions = style_target_mask(targets, style_set)
    hit_rate = soft_style_hit_rate(logits, positions, style_set)
    hits, counted = argmax_style_hits(logits, positions, style_set)
    rows = torch.tensor(rows, dtype=torch.bool, device=style_ids.device)
    image_log_probs = style_log_distribution(out["image_style_logits"], kl_temperature)
    if out.get("style_name_log_probs") is not None:
        text_log_probs = style_log_distribution(out["style_name_log_probs"], kl_temperature)
        style_kl = kl_divergence(text_log_probs, image_log_probs)
    else:
        style_kl = image_log_probs.new_zeros(size)
    return {
        "lm_loss": lm_loss_per_sample(logits, targets),
        "batch_lm_loss": out["loss"],
        "lm_tokens": answer_token_counts(targets),
        "style_hit_loss": 1.0 - hit_rate,
        "style_kl": style_kl,
        "style_ce": style_cross_entropy(out["image_style_logits"].float(), style_ids),
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
        "style_hit_loss": masked_mean(parts["style_hit_loss"], parts["hit_rows"]),
        "style_kl": masked_mean(parts["style_kl"], parts["style_rows"]),
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
            parts["hit_rows"].sum(),
            parts["style_rows"].sum(),
            (parts["style_ids"] >= 0).sum(),
        ]
    ).double()
    totals = counts.clone()
    dist.all_reduce(totals)
    share = (counts * get_world_size() / totals.clamp(min=1)).float()
    return {"lm_loss": share[0], "style_hit_loss": share[1], "style_kl": share[2], "style_ce": share[3]}


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
    the hit rate looks. A perfect answer scores 1, and no style token is pulled into the other positions."""
    return torch.isin(targets, style_token_ids)


def soft_style_hit_rate(logits, positions, style_token_ids):
    """(B,) mean over `positions` (B, T) of the probability mass on style tokens (differentiable)."""
    log_mass = torch.logsumexp(logits[..., style_token_ids], -1) - torch.logsumexp(logits, -1)  # (B, T)
    positions = positions.to(logits.dtype)
    return (log_mass.exp() * positions).sum(1) / positions.sum(1).clamp(min=1)


def argmax_style_hits(logits, positions, style_token_ids):
    """(hits (B,), positions (B,)): how many of `positions` (B, T) have a style token as their argmax."""
    is_style = torch.isin(logits.argmax(-1), style_token_ids) & positions
    return is_style.sum(1), positions.sum(1)


def style_log_distribution(scores, temperature):
    """(B, S) log-softmax over styles of scores (B, S) / temperature: image style logits, or the language
    model's log-probabilities of each style's name (models/style_parts.py)."""
    return F.log_softmax(scores.float() / temperature, -1)


def kl_divergence(log_p, log_q):
    """(B,) KL(p || q) for log-distributions over the last dimension."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def style_cross_entropy(image_style_logits, style_ids):
    """(B,) cross-entropy of the image style head against the label; 0 where there is no label (id < 0)."""
    loss = F.cross_entropy(image_style_logits, style_ids.clamp(min=0), reduction="none")
    return loss * (style_ids >= 0).to(loss.dtype)


RULES = ("question_types", "answer_names_style", "all_labelled")


class StyleRowRule:
    """run.style_rows and run.style_question_types, checked, as one rule."""

    def __init__(self, rule="question_types", question_types=None):
        if rule not in RULES:
            raise ValueError(f"run.style_rows is {rule!r}; it must be one of {list(RULES)}")
        if rule == "all_labelled" and question_types:
            raise ValueError(
                "run.style_rows is all_labelled but run.style_question_types lists types; use "
                "style_rows: question_types to apply the style terms to those types only"
            )
        self.rule = rule
        self.question_types = set(question_types) if question_types else None

    def rows(self, style_ids, question_types, answers, style_names) -> list[bool]:
        """Per row, whether the style hit-rate and KL terms apply."""
        out = []
        for style_id, question_type, answer in zip(style_ids, question_types, answers):
            row = int(style_id) != NO_STYLE
            if row and self.rule != "all_labelled" and self.question_types is not None:
                row = question_type in self.question_types
            if row and self.rule == "answer_names_style":
                row = mentions_style(answer, style_names)
            out.append(row)
        return out


def coverage(rows, hit_positions, labelled):
    """{term: train rows it covers} from per-row lists: style rows, their hit-rate positions (answer tokens
    that identify a style), labelled rows."""
    return {
        "lm_loss": len(rows),
        "style_hit_loss": sum(1 for row, n in zip(rows, hit_positions) if row and n > 0),
        "style_kl": sum(rows),
        "style_ce": sum(labelled),
    }


def uncovered_terms(covered, weights):
    """The weighted terms that cover no row: a misconfiguration (their metrics would be null)."""
    return [term for term, count in covered.items() if weights.get(term, 0) > 0 and count == 0]

"""Pure functions for the LM loss per sample and the style regularisers.

Shapes: logits (B, T, V) predict targets (B, T); targets are -100 except on answer tokens; S styles.
"""

import torch
import torch.nn.functional as F

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
    probe's log-probabilities of each style's name (models/style_name_scores.py)."""
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
    probe_log_probs (B, S): log P(name) per style (models/style_name_scores.py); image_logits (B, S).
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

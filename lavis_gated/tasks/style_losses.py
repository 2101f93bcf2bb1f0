"""Pure functions for the LM loss per sample and the style regularisers.

Shapes: logits (B, T, V) predict targets (B, T); targets are -100 except on answer tokens. "Answer word
positions" are the answer tokens minus the end token: the end token is never a style token, so counting
it would make a perfect answer's hit rate < 1 and pull style tokens into the end position.
"""

import torch
import torch.nn.functional as F

IGNORE = -100


def answer_word_mask(targets, eos_token_id):
    """(B, T) bool: positions whose target is an answer token other than the end token."""
    return (targets != IGNORE) & (targets != eos_token_id)


def masked_mean(values, mask):
    """Mean of values (B,) over mask (B,) bool; 0 (still in the graph) when the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def lm_loss_per_sample(logits, targets):
    """(B,) token-mean cross-entropy over each sample's answer tokens."""
    token_loss = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
    valid = (targets != IGNORE).to(token_loss.dtype)
    return (token_loss * valid).sum(1) / valid.sum(1).clamp(min=1)


def soft_style_hit_rate(logits, word_mask, style_token_ids):
    """(B,) mean over answer word positions of the probability mass on style tokens (differentiable)."""
    log_mass = torch.logsumexp(logits[..., style_token_ids], -1) - torch.logsumexp(logits, -1)  # (B, T)
    positions = word_mask.to(logits.dtype)
    return (log_mass.exp() * positions).sum(1) / positions.sum(1).clamp(min=1)


def argmax_style_hits(logits, word_mask, style_token_ids):
    """(hits (B,), positions (B,)): answer word positions whose argmax token is a style token."""
    is_style = torch.isin(logits.argmax(-1), style_token_ids) & word_mask
    return is_style.sum(1), word_mask.sum(1)


def text_style_log_probs(logits, word_mask, style_tokens, style_token_mask):
    """(B, S) log-distribution over styles read from the LM: predicted logits averaged over answer word
    positions, then over each style's tokens, then log-softmax over styles."""
    positions = word_mask.to(logits.dtype).unsqueeze(-1)
    mean_logits = (logits * positions).sum(1) / positions.sum(1).clamp(min=1)  # (B, V)
    per_token = mean_logits[:, style_tokens]  # (B, S, L)
    token_mask = style_token_mask.to(logits.dtype)
    per_style = (per_token * token_mask).sum(-1) / token_mask.sum(-1).clamp(min=1)  # (B, S)
    return F.log_softmax(per_style, -1)


def symmetric_kl(log_p, log_q):
    """(B,) 0.5 * (KL(p || q) + KL(q || p)) for log-distributions over the last dimension."""
    p, q = log_p.exp(), log_q.exp()
    return 0.5 * ((p * (log_p - log_q)).sum(-1) + (q * (log_q - log_p)).sum(-1))


def style_cross_entropy(image_style_logits, style_ids):
    """(B,) cross-entropy of the image style head against the label; 0 where there is no label (id < 0)."""
    loss = F.cross_entropy(image_style_logits, style_ids.clamp(min=0), reduction="none")
    return loss * (style_ids >= 0).to(loss.dtype)

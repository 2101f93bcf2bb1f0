"""Text in and out of the model: prompts, answer targets, padding, and the ids generation may emit.

One place pads every batch of token ids (right for training, left for generation, so that each answer
starts right after its prompt), and one builds the prompts, so that training, generation and the
modulation heatmap condition the Q-Former on the same text.
"""

import torch
from transformers import LogitsProcessor

# what a batch may carry instead of "image": the frozen parts' outputs (see frozen_features, feature_cache)
FROZEN_FEATURE_KEYS = ("vit_features", "style_features")
IGNORE = -100  # target of positions that are not answer tokens


def batch_size_of(samples):
    """Rows in a batch that carries images or any of their precomputed frozen features (modulation_strength
    needs only the style features)."""
    return next(samples[k] for k in ("image", *FROZEN_FEATURE_KEYS) if k in samples).shape[0]


def pad(sequences, pad_id, left=False, multiple=1):
    """List of id lists -> (ids (B, T), mask (B, T)) padded on the right, or the left for generation;
    T is the longest sequence rounded up to a multiple of `multiple`."""
    length = -(-max(len(s) for s in sequences) // multiple) * multiple
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(length - len(seq), length) if left else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


def format_prompts(samples, template):
    """Per-sample prompt strings: samples["prompt"] verbatim if given (one string for all, or one each), else
    `template` ("Question: {} Answer:") on each question of samples["text_input"] (a string or a list)."""
    batch_size = batch_size_of(samples)
    if "prompt" in samples:
        prompt = samples["prompt"]
        return [prompt] * batch_size if isinstance(prompt, str) else list(prompt)
    if "text_input" in samples:
        questions = samples["text_input"]
        questions = [questions] * batch_size if isinstance(questions, str) else list(questions)
        return [template.format(q) for q in questions]
    return [template.replace("{}", "").strip()] * batch_size


def prompt_ids(tokenizer, prompts, budgets):
    """Token ids per prompt (with BOS) within its budget; an over-long prompt keeps BOS and its tail
    ("... Answer:")."""
    ids = [tokenizer(p).input_ids for p in prompts]
    return [s if len(s) <= b else s[:1] + s[len(s) - b + 1 :] for s, b in zip(ids, budgets)]


def answer_ids(tokenizer, answers, max_txt_len, eos_token_id):
    """Target ids per answer: " <answer>" then the "\\n" end token (as LAVIS's blip2_opt); an answer keeps
    at most half of the token budget, the prompt the rest."""
    limit = max_txt_len // 2
    return [
        tokenizer(" " + a.strip(), add_special_tokens=False).input_ids[:limit] + [eos_token_id]
        for a in answers
    ]


def training_texts(prompts, answers, pad_id, multiple=1):
    """Prompt + answer ids -> (ids (B, T), mask (B, T), targets (B, T): the answer tokens, IGNORE elsewhere).
    Built on the host: no small copies on the device."""
    ids, mask = pad([p + a for p, a in zip(prompts, answers)], pad_id, multiple=multiple)
    targets = torch.full_like(ids, IGNORE)
    for row, (p, a) in enumerate(zip(prompts, answers)):
        targets[row, len(p) : len(p) + len(a)] = ids[row, len(p) : len(p) + len(a)]
    return ids, mask, targets


class TokenizerIdsOnly(LogitsProcessor):
    """Generation never emits an id the tokenizer lacks: OPT's embedding has more rows than its tokenizer has
    tokens (50272 for 50265), batch_decode cannot turn the extra ids into text, and a random or briefly
    trained OPT may score them highest. scores (B, V) -> the same, -inf from column `size` on."""

    def __init__(self, size):
        self.size = size

    def __call__(self, input_ids, scores):
        scores[:, self.size :] = -float("inf")
        return scores

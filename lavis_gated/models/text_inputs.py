"""Text in and out of the model: question and caption rows, prompts, targets, padding, and the ids generation
may emit.

One place pads every batch of token ids (right for training, left for generation, so that each answer
starts right after its prompt), and one builds the prompts, so that training, generation and the
modulation heatmap condition the Q-Former on the same text.
"""

import torch
from transformers import LogitsProcessor

# what a batch may carry instead of "image": the frozen parts' outputs (see frozen_features, feature_cache)
FROZEN_FEATURE_KEYS = ("vit_features", "style_features")
IGNORE = -100  # target of positions that are not target (answer or caption) tokens
UNLIMITED = 1 << 30  # a token budget no text reaches: a caption prompt is counted apart from the caption


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


def _per_row(samples, key, size):
    """samples[key] as one value per row (a string is every row's); None per row where absent."""
    value = samples.get(key)
    if value is None:
        return [None] * size
    return [value] * size if isinstance(value, str) else list(value)


def row_texts(samples, training):
    """(questions, targets): per row its question (None for a caption row) and its target text.

    Rows come as LAVIS's datasets give them:
    - no "answer" key: caption rows when training (text_input holds the captions, as LAVIS's coco_caption
      rows for blip2_opt); when generating, text_input holds the questions (LAVIS's predict_answers), and a
      batch without text_input is captioned (LAVIS's CaptionTask);
    - an "answer" key: question rows (text_input the questions, answer the targets); a row whose question
      is blank ("" or None) is a caption row whose caption is its answer, and a row whose answer is None is a
      caption row whose caption is its text_input. So caption and question rows mix in one batch.
    targets is None per row when generating without answers.
    """
    size = batch_size_of(samples)
    texts = _per_row(samples, "text_input", size)
    if "answer" not in samples:
        if not training:
            return [t if t and t.strip() else None for t in texts], [None] * size
        if any(t is None for t in texts):
            raise KeyError(
                "a training batch without 'answer' is a batch of caption rows and needs 'text_input' (the "
                "captions) for every row"
            )
        return [None] * size, texts
    answers = _per_row(samples, "answer", size)
    questions = [None if a is None or not (t and t.strip()) else t for t, a in zip(texts, answers)]
    targets = [t if a is None else a for t, a in zip(texts, answers)]
    if training and any(t is None for t in targets):
        rows = [i for i, t in enumerate(targets) if t is None]
        raise KeyError(f"batch rows {rows[:5]} have neither an answer nor a caption (text_input)")
    return questions, targets


def format_prompts(samples, template, caption_prompt, questions):
    """Per-row prompt strings: samples["prompt"] verbatim if given (one string for all, or one each), else
    `template` ("Question: {} Answer:") on each question and `caption_prompt` on each caption row (None in
    `questions`)."""
    if "prompt" in samples:
        prompt = samples["prompt"]
        return [prompt] * len(questions) if isinstance(prompt, str) else list(prompt)
    if any(q is not None for q in questions) and template.count("{}") != 1:
        raise ValueError(
            f"model.prompt {template!r} has no {{}} for the question: every question would become the same "
            "prompt; set model.prompt to a question template and model.caption_prompt to the caption prompt"
        )
    return [caption_prompt if q is None else template.format(q) for q in questions]


def prompt_ids(tokenizer, prompts, budgets):
    """Token ids per prompt (with BOS) within its budget; an over-long prompt keeps BOS and its tail
    ("... Answer:")."""
    ids = [tokenizer(p).input_ids for p in prompts]
    return [s if len(s) <= b else s[:1] + s[len(s) - b + 1 :] for s, b in zip(ids, budgets)]


def target_ids(tokenizer, texts, limits, eos_token_id):
    """Target ids per text: " <text>" (whitespace runs read as one space) then the "\n" end token, as LAVIS's
    blip2_opt; a text longer than its limit keeps its first `limit` tokens and no end token, so the model
    never learns to stop where a cut left off."""
    out = []
    for text, limit in zip(texts, limits):
        ids = tokenizer(" " + " ".join(str(text).split()), add_special_tokens=False).input_ids
        out.append(ids[:limit] if len(ids) > limit else ids + [eos_token_id])
    return out


def answer_ids(tokenizer, answers, max_txt_len, eos_token_id):
    """target_ids of answers: an answer keeps at most half of the token budget, the prompt the rest."""
    return target_ids(tokenizer, answers, [max_txt_len // 2] * len(answers), eos_token_id)


def training_texts(prompts, answers, pad_id, multiple=1):
    """Prompt + target ids -> (ids (B, T), mask (B, T), targets (B, T): the target tokens, IGNORE elsewhere).
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

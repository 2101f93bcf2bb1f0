"""How likely the language model is to answer each style's name: the text side of the style KL.

For a row and every style s, the log-probability of the style's answer form " <form_s>" as the answer, given
the image prefix and the prompt: the sum of its tokens' log-probabilities, each conditioned on the tokens
before it. Unlike an average of logits over a bag of sub-tokens, this separates styles that share tokens
("Realism" / "New Realism", "Cubism" / "Synthetic Cubism").

It reuses the training pass: the keys and values of the prefix and prompt positions do not depend on the
answer after them (causal attention), so the continuations of a row run on that pass's cache. Styles are
grouped by the length of their form, one language-model call per length, so no padding is computed: per
scored row, sum over styles of (form length - 1) extra tokens (27 for the packaged 28 styles with the
`mid` benchmark's tokenizer, against 112 when every form is padded to the longest).
"""

import torch


def _token_log_probs(lm_head, hidden, tokens):
    """log p(tokens) (N, M) from the hidden states (N, M, D) that predict them, without a log-softmax copy."""
    logits = lm_head(hidden).float()
    return logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)


def _next_token_log_probs(lm_head, hidden, tokens):
    """log p(each of tokens (M,) as the next token) (N, M) from one hidden state per row (N, D): one
    vocabulary projection per row, not per token."""
    logits = lm_head(hidden).float()
    return logits[:, tokens] - torch.logsumexp(logits, -1, keepdim=True)


def style_name_log_probs(
    decoder, lm_head, past_key_values, hidden, context_lengths, rows, form_tokens, form_lengths
):
    """(R, S) log P(" <form_s>" | prefix, prompt) for the R batch rows `rows` (list of ints) and S styles.

    past_key_values: per decoder layer (keys, values) of the training pass over [prefix; prompt; answer],
    each (B, H, T, D_head); hidden (B, T, D): that pass's last hidden states; context_lengths: per row of
    `rows` (ints), its prefix and prompt positions (position context_length - 1 predicts the answer's first
    token); form_tokens (S, L): each style's form, padded on the right; form_lengths: their lengths (ints).
    """
    device = hidden.device
    index = torch.tensor(rows, device=device)
    context = torch.tensor(context_lengths, device=device)
    total = _next_token_log_probs(lm_head, hidden[index, context - 1], form_tokens[:, 0])  # (R, S)
    span = max(context_lengths)  # host ints: no wait for the device (and shapes work on the meta device)
    past = tuple(tuple(t[index, :, :span] for t in layer) for layer in past_key_values)
    context_mask = (torch.arange(span, device=device)[None] < context[:, None]).long()
    for length in sorted(set(form_lengths) - {1}):
        styles = torch.tensor([s for s, n in enumerate(form_lengths) if n == length], device=device)
        rest = _continuation_log_probs(decoder, lm_head, past, context_mask, form_tokens[styles, :length])
        total = total.index_add(1, styles, rest)
    return total


def _continuation_log_probs(decoder, lm_head, past, context_mask, forms):
    """(R, G) log P(tokens 2.. of each of G forms of one length | the row's context and the form's first
    token), for every row of the cache `past` (each (R, H, span, D_head)) and context_mask (R, span)."""
    rows, group = context_mask.shape[0], forms.shape[0]
    repeated = tuple(tuple(t.repeat_interleave(group, 0) for t in layer) for layer in past)
    inputs, targets = forms[:, :-1].repeat(rows, 1), forms[:, 1:].repeat(rows, 1)
    out = decoder(
        input_ids=inputs,
        attention_mask=torch.cat([context_mask.repeat_interleave(group, 0), torch.ones_like(inputs)], 1),
        past_key_values=repeated,
        use_cache=False,
        return_dict=True,
    )
    return _token_log_probs(lm_head, out.last_hidden_state, targets).sum(-1).view(rows, group)


def scattered(values, rows, batch_size):
    """(R, S) values of `rows` (list of ints) -> (B, S), zero in the other rows."""
    out = values.new_zeros((batch_size, values.shape[1]))
    return out.index_copy(0, torch.tensor(rows, device=values.device), values)

"""How likely the language model is to answer each style's name: the text side of the style KL.

For a row and every style s, the log-probability of the style's answer form " <form_s>" as the answer, given
the image prefix and the prompt: the sum of its tokens' log-probabilities, each conditioned on the tokens
before it. Unlike an average of logits over a bag of sub-tokens, this separates styles that share tokens
("Realism" / "New Realism", "Cubism" / "Synthetic Cubism").

It reuses the training pass: the keys and values of the prefix and prompt positions do not depend on the
answer after them (causal attention), so the S continuations of a row run on that pass's cache. Cost per
scored row: S * (L - 1) extra tokens through the language model, L = the longest form in tokens.
"""

import torch


def _token_log_probs(lm_head, hidden, tokens):
    """log p(tokens) (N, M) from the hidden states (N, M, D) that predict them, without a log-softmax copy."""
    logits = lm_head(hidden).float()
    return logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)


def style_name_log_probs(
    decoder, lm_head, past_key_values, hidden, context_lengths, rows, form_tokens, form_mask
):
    """(R, S) log P(" <form_s>" | prefix, prompt) for the R batch rows `rows` (list of ints) and S styles.

    past_key_values: per decoder layer (keys, values) of the training pass over [prefix; prompt; answer],
    each (B, H, T, D_head); hidden (B, T, D): that pass's last hidden states; context_lengths: per row of
    `rows` (ints), its prefix and prompt positions (position context_length - 1 predicts the answer's first
    token); form_tokens / form_mask (S, L): each style's form, padded on the right.
    """
    num_styles, length = form_tokens.shape
    device = hidden.device
    index = torch.tensor(rows, device=device)
    context = torch.tensor(context_lengths, device=device)
    first_hidden = hidden[index, context - 1].unsqueeze(1).expand(-1, num_styles, -1)  # (R, S, D)
    total = _token_log_probs(lm_head, first_hidden, form_tokens[:, 0].expand(len(rows), -1))
    if length == 1:
        return total
    span = max(context_lengths)  # host ints: no wait for the device (and shapes work on the meta device)
    past = tuple(
        tuple(t[index, :, :span].repeat_interleave(num_styles, 0) for t in layer) for layer in past_key_values
    )
    positions = torch.arange(span, device=device)
    context_mask = (positions[None] < context[:, None]).long().repeat_interleave(num_styles, 0)
    inputs, targets = form_tokens[:, :-1].repeat(len(rows), 1), form_tokens[:, 1:].repeat(len(rows), 1)
    counted = form_mask[:, 1:].repeat(len(rows), 1)
    out = decoder(
        input_ids=inputs,
        attention_mask=torch.cat([context_mask, form_mask[:, :-1].long().repeat(len(rows), 1)], 1),
        past_key_values=past,
        use_cache=False,
        return_dict=True,
    )
    rest = _token_log_probs(lm_head, out.last_hidden_state, targets) * counted.to(total.dtype)
    return total + rest.sum(-1).view(len(rows), num_styles)


def scattered(values, rows, batch_size):
    """(R, S) values of `rows` (list of ints) -> (B, S), zero in the other rows."""
    out = values.new_zeros((batch_size, values.shape[1]))
    return out.index_copy(0, torch.tensor(rows, device=values.device), values)

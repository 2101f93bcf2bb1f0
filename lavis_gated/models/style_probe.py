"""The style probe: for an image with a style label, whatever its row asks, how likely the model is to answer
each style's name to one fixed style question ("Question: What style is this painting? Answer:",
model.style_probe.prompt).

Real ArtQuest asks about artist, school, timeframe, type, technique and title, never about style, so the style
terms cannot read the row's own question or answer. The probe is a second prompt on the same image: its
control tokens come from the probe prompt (the PromptMapper reads the probe's OPT embeddings), it reuses the
row's frozen ViT and style CNN features (no second image encoding), and OPT scores each style's form on the
probe prefix's key/value cache (style_name_scores: a trie, so the prefix runs once per row and only names
sharing a first token need more positions).
"""

import torch

from lavis_gated.models.style_name_scores import NameTrie, name_log_probs


class StyleProbe:
    """The probe prompt's token ids and the trie of the current style forms (rebuilt when they change)."""

    def __init__(self, tokenizer, prompt, end_token_id):
        if not prompt or "{}" in prompt:
            raise ValueError(
                f"model.style_probe.prompt is {prompt!r}: give the whole probe question, e.g. "
                "'Question: What style is this painting? Answer:' (it takes no {} placeholder)"
            )
        self.prompt = prompt
        self.prompt_ids = tokenizer(prompt).input_ids  # with BOS, as the row prompts
        self.end_token_id = end_token_id
        self._trie_key, self._trie = None, None

    def trie(self, form_token_ids):
        """The NameTrie of the styles' forms (lists of ids), each followed by the end token."""
        key = tuple(tuple(ids) for ids in form_token_ids)
        if key != self._trie_key:
            self._trie = NameTrie([list(ids) + [self.end_token_id] for ids in key])
            self._trie_key = key
        return self._trie

    def name_log_probs(self, model, frozen, rows):
        """(R, S) fp32 log P(style s's form | image, probe prompt) for the batch rows `rows` (list of ints).

        frozen: the batch's frozen features ({"vit_features": (B, T, D_vit), "style_features": (B, F)});
        model: a Blip2OPTGated (its encode_image, OPT and style forms)."""
        device = frozen["vit_features"].device
        index = torch.tensor(rows, device=device)
        selected = {key: value[index] for key, value in frozen.items()}
        ids = torch.tensor([self.prompt_ids] * len(rows), device=device)
        mask = torch.ones_like(ids)
        prefix, _ = model.encode_image(selected, ids, mask)
        trie = self.trie(model.style_vocabulary.form_ids)
        opt = model.opt_model
        with model.frozen_autocast(model.opt_precision):
            embeds = torch.cat([prefix, opt.get_input_embeddings()(ids)], 1)
            decoded = opt.model.decoder(
                inputs_embeds=embeds,
                attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=device),
                use_cache=True,
                return_dict=True,
            )
            return name_log_probs(
                opt.model.decoder,
                opt.lm_head,
                decoded.past_key_values,
                decoded.last_hidden_state[:, -1],
                trie,
            )

"""The model's style side: the vocabulary it carries in every checkpoint, the frozen style CNN, the style
head, and the token ids of the styles' answer forms that the style losses read (models/style_tokens.py).

The vocabulary is part of the state dict (extra state), so a trained checkpoint carries its own styles into
whatever loads it; a model built with other style names adopts the checkpoint's (adopt_style_vocabulary).
"""

import logging
from dataclasses import asdict

import torch
import torch.nn as nn

from lavis_gated.datasets.style_vocabulary import StyleVocabulary, normalise_style
from lavis_gated.models.sources import loading_source, seeded
from lavis_gated.models.style_encoder import StyleEncoder
from lavis_gated.models.style_tokens import form_token_ids, identifying_tokens
from lavis_gated.models.text_inputs import pad


class StyleVocabularyState(nn.Module):
    """Carries the style names in the model's state dict, so they travel with every checkpoint, with the
    token ids the style losses read (buffers, not saved as tensors: they are rebuilt from the extra state):
    form_tokens (S, L) / form_token_mask (S, L), each style's answer form " <form>" padded, and form_ids
    (the same, unpadded host lists: the style probe's trie); hit_tokens (K,), sorted, the tokens that
    identify a style (style_tokens.identifying_tokens)."""

    def __init__(self, vocabulary: StyleVocabulary):
        super().__init__()
        self.vocabulary = vocabulary
        self.forms = list(vocabulary.names)
        self.set_tokens(self.forms, [[0]] * len(self.forms), [])

    def set_tokens(self, forms, form_ids, hit_tokens):
        """Each style's answer form, its token ids, and the identifying token ids."""
        device = self.form_tokens.device if hasattr(self, "form_tokens") else None
        if len(forms) != len(self.vocabulary) or len(form_ids) != len(self.vocabulary):
            raise ValueError(f"{len(forms)} answer forms for {len(self.vocabulary)} styles")
        self.forms = list(forms)
        form_tokens, form_token_mask = pad([list(ids) for ids in form_ids], pad_id=0)
        self.form_ids = [list(ids) for ids in form_ids]  # host lists: the probe's trie needs no GPU wait
        self.register_buffer("form_tokens", form_tokens.to(device), persistent=False)
        self.register_buffer("form_token_mask", form_token_mask.bool().to(device), persistent=False)
        # sorted once here, not per step: torch.unique would make the step wait for the GPU, and shapes could
        # not be checked on the meta device
        hit = torch.tensor(sorted(set(hit_tokens)), dtype=torch.long)
        self.register_buffer("hit_tokens", hit.to(device), persistent=False)

    def use_forms(self, tokenizer, forms, other_answers=(), max_share=1.0):
        """Tokenise the styles' answer forms and choose the identifying tokens (style_tokens' rule); returns
        {reason: token texts left out}."""
        form_ids = form_token_ids(tokenizer, forms)
        hit, left_out = identifying_tokens(tokenizer, form_ids, other_answers, max_share)
        self.set_tokens(forms, form_ids, hit)
        return left_out

    def get_extra_state(self):
        return {
            "names": list(self.vocabulary.names),
            "forms": list(self.forms),
            "form_token_ids": [
                ids[mask].tolist() for ids, mask in zip(self.form_tokens.cpu(), self.form_token_mask.cpu())
            ],
            "hit_tokens": self.hit_tokens.tolist(),
        }

    def set_extra_state(self, state):
        if list(state["names"]) != self.vocabulary.names:
            raise ValueError(
                f"checkpoint style vocabulary {state['names']} differs from the model's "
                f"{self.vocabulary.names}; load it with the model's load_checkpoint, which adopts it"
            )
        if "form_token_ids" in state:  # older checkpoints carry the names only: their forms are the names
            self.set_tokens(state["forms"], state["form_token_ids"], state["hit_tokens"])


def build_style_encoder(config):
    """The frozen style CNN of a ModelConfig, its random weights (if allowed) drawn from its own seed."""
    settings = config.style_encoder
    with (
        seeded(config.random_init_seed + 2),
        loading_source("model.style_encoder.checkpoint", settings.checkpoint),
    ):
        return StyleEncoder(**asdict(settings))


def set_style_vocabulary(model, names):
    """Give `model` the vocabulary `names`: the extra-state carrier with the names' token ids (the names are
    the answer forms until set_answer_forms gives the train split's), and a style head of that many rows
    (from the CNN's classifier rows where the names match)."""
    vocabulary = StyleVocabulary(names)
    model.style_vocabulary = StyleVocabularyState(vocabulary)
    model.style_vocabulary.use_forms(model.opt_tokenizer, vocabulary.names)
    model.style_head = nn.Linear(model.style_encoder.num_features, len(vocabulary))
    init_style_head_from_classifier(model.style_head, model.style_encoder.classifier, vocabulary)


def set_answer_forms(model, forms, other_answers, max_share):
    """The styles' forms in the train split's answers and its answers that name no style -> the token ids the
    style losses read (carried by every checkpoint from then on); logs what the rule left out."""
    state = model.style_vocabulary
    left_out = state.use_forms(model.opt_tokenizer, forms, other_answers, max_share)
    tokenizer = model.opt_tokenizer
    logging.info(
        "style answer forms: %s; tokens that identify a style: %s; left out: %s",
        dict(zip(state.vocabulary.names, forms)),
        [tokenizer.decode([t]) for t in state.hit_tokens.tolist()],
        left_out,
    )
    hit = set(state.hit_tokens.tolist())
    without = [
        n
        for n, ids in zip(state.vocabulary.names, state.get_extra_state()["form_token_ids"])
        if not hit & set(ids)
    ]
    if without:
        logging.warning(
            "styles with no token that identifies them (their rows are left out of the style hit-rate "
            "term): %s",
            without,
        )


def adopt_style_vocabulary(model, names):
    """Replace `model`'s vocabulary with a checkpoint's before its weights load: a new style head of the
    checkpoint's size (its weights come from the checkpoint), on the old head's device."""
    device = model.style_head.weight.device
    logging.info(
        "adopting the checkpoint's style vocabulary (%d styles) instead of the model's (%d)",
        len(names),
        len(model.vocabulary),
    )
    set_style_vocabulary(model, names)
    for name in ("style_head", "style_vocabulary"):
        setattr(model, name, getattr(model, name).to(device))


def init_style_head_from_classifier(style_head, classifier, vocabulary):
    """Start the style head's row for each style the CNN was trained to classify from that class's classifier
    row (matched by normalised name); the other rows keep their random initialisation."""
    if classifier is None:
        return
    rows = {normalise_style(name): row for row, name in enumerate(classifier.class_names)}
    matched = [(i, rows[name]) for i, name in enumerate(vocabulary.names) if name in rows]
    with torch.no_grad():
        for style_id, row in matched:
            style_head.weight[style_id] = classifier.weight[row]
            style_head.bias[style_id] = classifier.bias[row]
    logging.info(
        "style head: %d of %d styles start from the CNN classifier's rows: %s; unmatched: %s",
        len(matched),
        len(vocabulary),
        [vocabulary.names[i] for i, _ in matched],
        [n for n in vocabulary.names if n not in rows],
    )

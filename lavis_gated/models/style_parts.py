"""The model's style side: the vocabulary it carries in every checkpoint, the frozen style CNN, the style
head, and the style names' token ids that the style losses read.

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
from lavis_gated.models.text_inputs import pad


class StyleVocabularyState(nn.Module):
    """Carries the style names in the model's state dict, so they travel with every checkpoint."""

    def __init__(self, vocabulary: StyleVocabulary):
        super().__init__()
        self.vocabulary = vocabulary

    def get_extra_state(self):
        return {"names": list(self.vocabulary.names)}

    def set_extra_state(self, state):
        if list(state["names"]) != self.vocabulary.names:
            raise ValueError(
                f"checkpoint style vocabulary {state['names']} differs from the model's "
                f"{self.vocabulary.names}; load it with the model's load_checkpoint, which adopts it"
            )


def build_style_encoder(config):
    """The frozen style CNN of a ModelConfig, its random weights (if allowed) drawn from its own seed."""
    settings = config.style_encoder
    with (
        seeded(config.random_init_seed + 2),
        loading_source("model.style_encoder.checkpoint", settings.checkpoint),
    ):
        return StyleEncoder(**asdict(settings))


def set_style_vocabulary(model, names):
    """Give `model` the vocabulary `names`: the extra-state carrier, a style head of that many rows (from the
    CNN's classifier rows where the names match) and the names' token ids (buffers the style losses read)."""
    vocabulary = StyleVocabulary(names)
    model.style_vocabulary = StyleVocabularyState(vocabulary)
    model.style_head = nn.Linear(model.style_encoder.num_features, len(vocabulary))
    init_style_head_from_classifier(model.style_head, model.style_encoder.classifier, vocabulary)
    token_ids = vocabulary.token_ids(model.opt_tokenizer)
    style_tokens, style_token_mask = pad(token_ids, pad_id=0)
    model.register_buffer("style_tokens", style_tokens, persistent=False)  # (S, L) token ids per style
    model.register_buffer("style_token_mask", style_token_mask.bool(), persistent=False)
    # (K,) sorted ids of every style token, once: the style losses' token set, not computed per step (with
    # torch.unique, that step would wait for the GPU, and shapes could not be checked on the meta device)
    style_token_set = torch.tensor(sorted({t for ids in token_ids for t in ids}), dtype=torch.long)
    model.register_buffer("style_token_set", style_token_set, persistent=False)


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
    for name in ("style_head", "style_tokens", "style_token_mask", "style_token_set"):
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

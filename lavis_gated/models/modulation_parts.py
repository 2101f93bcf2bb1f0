"""The parts that modulate the Q-Former: style_to_qformer and the PromptMapper (style feature + prompt ->
control tokens), KVModulation hooked onto every cross-attention layer's key/value projections, and optional
peft LoRA on those projections. None of them exists with gating.type none, except LoRA if enabled."""

import logging

import torch.nn as nn

from lavis_gated.models.cross_attention_lora import add_cross_attention_lora
from lavis_gated.models.kv_modulation import KVModulation
from lavis_gated.models.prompt_mapper import PromptMapper


def build_modulation_parts(model, config):
    """Give `model` (its Q-Former, OPT and style encoder built) the parts of a ModelConfig's gating, prompt
    mapper and LoRA blocks; returns the KVModulation, or None for gating.type none."""
    qformer_width = model.Qformer.config.hidden_size
    cross_attention = model.cross_attention_layers()
    kv_modulation = None
    if config.gating.type != "none":
        mapper, gating = config.prompt_mapper, config.gating
        model.style_to_qformer = nn.Linear(model.style_encoder.num_features, qformer_width)
        model.prompt_mapper = PromptMapper(
            style_dim=qformer_width,
            prompt_dim=model.opt_model.get_input_embeddings().embedding_dim,
            hidden_size=mapper.hidden_size,
            num_tokens=mapper.num_tokens,
            num_heads=mapper.num_heads,
            dropout=mapper.dropout,
        )
        kv_modulation = KVModulation(
            control_dim=mapper.hidden_size,
            num_control_tokens=mapper.num_tokens,
            num_layers=len(cross_attention),
            num_heads=model.Qformer.config.num_attention_heads,
            width=qformer_width,
            gating_type=gating.type,
            per_head=gating.per_head,
            hidden_dim=gating.hidden_dim,
            init_scale=gating.init_scale,
        )
    model.kv_modulation = kv_modulation
    if config.lora.enabled:
        lora = config.lora
        adapted = add_cross_attention_lora(model.Qformer, lora.rank, lora.alpha, lora.dropout)
        logging.info("LoRA on %d cross-attention projections", len(adapted))
    if kv_modulation is not None:
        kv_modulation.attach(
            [(layer.crossattention.self.key, layer.crossattention.self.value) for layer in cross_attention]
        )
    return kv_modulation

"""K/V modulation of the Q-Former's cross-attention, driven by control tokens.

One small MLP maps the control tokens to every cross-attention layer's parameters at once (computed once per
sample, not per head or per token): FiLM (K * (1 + gamma_k), V * (1 + gamma_v) + beta_v) or a gate (K * (1 +
tanh(g_k)), V * (1 + tanh(g_v))), per head or per channel. K gets no beta: a shift that is the same for every
key adds the same amount to all of a query's scores, which softmax cancels. Its last layer starts at zero, so
a fresh modulation is exactly the identity and training starts from BLIP-2 itself.

The parameters are applied by forward hooks on the key/value projections, which leaves the
Q-Former's modules and state-dict keys exactly LAVIS's (BLIP-2 checkpoints load unchanged).

PromptMapper: (style feature, prompt embeddings) -> a few control tokens.

Learned queries, shifted by the style feature, cross-attend over [style; prompt tokens], so the
control tokens carry both what the image's style is and what the question asks about it.

Optional LoRA on the Q-Former's cross-attention key/value projections, through peft.

peft renames an adapted layer's weights (`key.weight` -> `key.base_layer.weight`); a load-state-dict
pre-hook maps plain BLIP-2 keys onto that layout so published checkpoints still load.

The parts that modulate the Q-Former: style_to_qformer and the PromptMapper (style feature + prompt ->
control tokens), KVModulation hooked onto every cross-attention layer's key/value projections, and optional
peft LoRA on those projections. None of them exists with gating.type none, except LoRA if enabled.
"""

import functools
import logging
import re
from contextlib import contextmanager

import torch
import torch.nn as nn

from lavis_gated.configs.model_config import GATING_TYPES
from lavis_gated.models.precision import autocast_off

# rows of the per-layer parameter block: key scale, value scale[, value shift]
_PARAMS_PER_LAYER = {"film": 3, "gate": 2}


class KVModulation(nn.Module):
    def __init__(
        self,
        control_dim,
        num_control_tokens,
        num_layers,
        num_heads,
        width,
        gating_type="film",
        per_head=True,
        hidden_dim=256,
        init_scale=0.0,
    ):
        super().__init__()
        if gating_type not in _PARAMS_PER_LAYER:
            raise ValueError(f"model.gating.type {gating_type!r} is not one of {GATING_TYPES}")
        self.gating_type = gating_type
        self.per_head = per_head
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.units = num_heads if per_head else width
        self.params_per_layer = _PARAMS_PER_LAYER[gating_type]
        self.net = nn.Sequential(
            nn.Linear(num_control_tokens * control_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, num_layers * self.params_per_layer * self.units),
        )
        last = self.net[-1]
        if init_scale > 0:
            nn.init.normal_(last.weight, std=init_scale)
        else:
            nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self._active = None  # factors(params) while conditioned
        self._handles = []

    def forward(self, control_tokens):
        """control_tokens (B, N, C) -> modulation parameters (B, L, params_per_layer, units), fp32."""
        with autocast_off(control_tokens.device.type):
            raw = self.net(control_tokens.float().flatten(1))
        return raw.view(raw.shape[0], self.num_layers, self.params_per_layer, self.units)

    def attach(self, projections):
        """Hook the (key, value) projection modules of each cross-attention layer, in layer order."""
        if len(projections) != self.num_layers:
            raise ValueError(
                f"{len(projections)} cross-attention layers, modulation built for {self.num_layers}"
            )
        for handle in self._handles:
            handle.remove()
        # partial of a bound method (not a closure): copy.deepcopy of the model rebinds it to the copy
        self._handles = [
            module.register_forward_hook(functools.partial(self._apply_hook, layer, which))
            for layer, pair in enumerate(projections)
            for which, module in enumerate(pair)
        ]

    @contextmanager
    def conditioned(self, params):
        """Apply `params` (from forward) to every hooked projection inside the block."""
        self._active = self.factors(params)
        try:
            yield
        finally:
            self._active = None

    def factors(self, params):
        """params (B, L, params_per_layer, units) -> (scales (B, L, 2, ...), V shift (B, L, ...) or None),
        fp32, shaped to broadcast over a projection viewed as (B, T, heads, head_dim) or (B, T, width).

        Computed once per batch for every layer, so each hook applies its layer's slice in one operation.
        """
        params = params.float()
        shape = (
            (params.shape[0], self.num_layers, -1, 1, self.units, 1)
            if self.per_head
            else (params.shape[0], self.num_layers, -1, 1, self.units)
        )
        scales = params[:, :, :2] if self.gating_type == "film" else torch.tanh(params[:, :, :2])
        shift = params[:, :, 2].reshape(shape[:2] + shape[3:]) if self.gating_type == "film" else None
        return (1 + scales).reshape(shape), shift

    def _apply_hook(self, layer, which, module, inputs, output):
        if self._active is None:
            return output
        scales, shift = self._active
        return self.modulate(
            output, scales[:, layer, which], shift[:, layer] if which == 1 and shift is not None else None
        )

    def modulate(self, projected, scale, shift=None):
        """projected (B, T, D) key or value; scale (and shift) (B, 1, heads, 1) or (B, 1, D), fp32 (see
        factors).

        Computed in fp32 (1 + a small gamma is not representable in fp16) and returned in the projection's
        dtype: one fused operation (fp16 inputs are read as fp32 on the fly, no fp32 copy of K/V is made),
        plus the cast back when the projection is not fp32.
        """
        shape = projected.shape
        x = projected.view(shape[0], shape[1], self.num_heads, -1) if self.per_head else projected
        # autocast would cast K/V to fp32 first for addcmul (a "widest type" op): plain type promotion does
        # not
        with autocast_off(projected.device.type):
            out = x * scale if shift is None else torch.addcmul(shift, x, scale)
        return out.view(shape).to(projected.dtype)


class PromptMapper(nn.Module):
    def __init__(self, style_dim, prompt_dim, hidden_size=256, num_tokens=4, num_heads=4, dropout=0.1):
        super().__init__()
        self.num_tokens = num_tokens
        self.hidden_size = hidden_size
        self.style_proj = nn.Linear(style_dim, hidden_size)
        self.prompt_proj = nn.Linear(prompt_dim, hidden_size)
        self.queries = nn.Parameter(torch.randn(num_tokens, hidden_size) * 0.02)
        self.norm_query = nn.LayerNorm(hidden_size)
        self.norm_memory = nn.LayerNorm(hidden_size)
        self.attention = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout, batch_first=True)
        self.norm_ffn = nn.LayerNorm(hidden_size)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_size, 4 * hidden_size),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(4 * hidden_size, hidden_size),
        )

    def forward(self, style_feature, prompt_embeds, prompt_mask):
        """style_feature (B, style_dim), prompt_embeds (B, T, prompt_dim), prompt_mask (B, T) 1 = token
        -> control tokens (B, num_tokens, hidden_size)."""
        style = self.style_proj(style_feature).unsqueeze(1)  # (B, 1, H)
        memory = self.norm_memory(torch.cat([style, self.prompt_proj(prompt_embeds.to(style.dtype))], dim=1))
        ignore = torch.cat([prompt_mask.new_ones(prompt_mask.shape[0], 1), prompt_mask], dim=1) == 0
        tokens = self.queries.unsqueeze(0) + style  # (B, N, H)
        attended, _ = self.attention(
            self.norm_query(tokens), memory, memory, key_padding_mask=ignore, need_weights=False
        )
        tokens = tokens + attended
        return tokens + self.ffn(self.norm_ffn(tokens))


CROSS_ATTENTION_KV = r".*crossattention\.self\.(key|value)"


def add_cross_attention_lora(qformer, rank=8, alpha=16, dropout=0.05):
    """Inject LoRA adapters into `qformer` in place; returns the adapted module names."""
    from peft import LoraConfig, inject_adapter_in_model

    trainable = {name: p.requires_grad for name, p in qformer.named_parameters()}
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=CROSS_ATTENTION_KV, bias="none"
    )
    inject_adapter_in_model(config, qformer)
    # peft freezes every non-LoRA parameter; keep the Q-Former's own trainability as configured.
    for name, p in qformer.named_parameters():
        plain = name.replace(".base_layer.", ".")
        if plain in trainable:
            p.requires_grad = trainable[plain]
    return [name for name, _ in qformer.named_modules() if re.fullmatch(CROSS_ATTENTION_KV, name)]


def remap_plain_kv_keys(state_dict, prefix, own_keys):
    """In place: `...crossattention.self.key.weight` -> `...key.base_layer.weight` where the model has
    LoRA."""
    for key in list(state_dict):
        match = re.fullmatch(r"(.*crossattention\.self\.(?:key|value))\.(weight|bias)", key)
        if match and key not in own_keys:
            adapted = f"{match.group(1)}.base_layer.{match.group(2)}"
            if adapted in own_keys:
                state_dict[adapted] = state_dict.pop(key)


def build_modulation_parts(config, qformer, prompt_dim, style_dim):
    """The parts of a ModelConfig's gating and prompt-mapper blocks for a Q-Former whose cross-attention
    layers `cross_attention_layers(qformer)` gives: (style_to_qformer, prompt_mapper, kv_modulation), each
    None for gating.type none. prompt_dim is OPT's embedding width, style_dim the style CNN's pooled width.
    The KVModulation is not yet attached (attach_modulation does that, after any LoRA)."""
    if config.gating.type == "none":
        return None, None, None
    qformer_width = qformer.config.hidden_size
    mapper, gating = config.prompt_mapper, config.gating
    style_to_qformer = nn.Linear(style_dim, qformer_width)
    prompt_mapper = PromptMapper(
        style_dim=qformer_width,
        prompt_dim=prompt_dim,
        hidden_size=mapper.hidden_size,
        num_tokens=mapper.num_tokens,
        num_heads=mapper.num_heads,
        dropout=mapper.dropout,
    )
    kv_modulation = KVModulation(
        control_dim=mapper.hidden_size,
        num_control_tokens=mapper.num_tokens,
        num_layers=len(cross_attention_layers(qformer)),
        num_heads=qformer.config.num_attention_heads,
        width=qformer_width,
        gating_type=gating.type,
        per_head=gating.per_head,
        hidden_dim=gating.hidden_dim,
        init_scale=gating.init_scale,
    )
    return style_to_qformer, prompt_mapper, kv_modulation


def cross_attention_layers(qformer):
    """The Q-Former layers whose cross-attention K/V are modulated (every cross_attention_freq-th)."""
    return [layer for layer in qformer.bert.encoder.layer if layer.has_cross_attention]


def attach_modulation(qformer, config, kv_modulation):
    """LoRA on the cross-attention K/V projections (config.lora), then the K/V modulation around them."""
    if config.lora.enabled:
        lora = config.lora
        adapted = add_cross_attention_lora(qformer, lora.rank, lora.alpha, lora.dropout)
        logging.info("LoRA on %d cross-attention projections", len(adapted))
    if kv_modulation is not None:
        kv_modulation.attach(
            [
                (layer.crossattention.self.key, layer.crossattention.self.value)
                for layer in cross_attention_layers(qformer)
            ]
        )

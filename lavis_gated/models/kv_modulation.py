"""K/V modulation of the Q-Former's cross-attention, driven by control tokens.

One small MLP maps the control tokens to every cross-attention layer's parameters at once (computed once per
sample, not per head or per token): FiLM (K * (1 + gamma_k), V * (1 + gamma_v) + beta_v) or a gate (K * (1 +
tanh(g_k)), V * (1 + tanh(g_v))), per head or per channel. K gets no beta: a shift that is the same for every
key adds the same amount to all of a query's scores, which softmax cancels. Its last layer starts at zero, so
a fresh modulation is exactly the identity and training starts from BLIP-2 itself.

The parameters are applied by forward hooks on the key/value projections, which leaves the
Q-Former's modules and state-dict keys exactly LAVIS's (BLIP-2 checkpoints load unchanged).
"""

import functools
from contextlib import contextmanager

import torch
import torch.nn as nn

from lavis_gated.models.precision import autocast_off

GATING_TYPES = ("film", "gate", "none")
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

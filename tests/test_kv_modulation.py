"""KVModulation applies FiLM / gate to hooked K/V projections exactly as defined, in fp32, in the projection's
dtype."""

import pytest
import torch
import torch.nn as nn

from lavis_gated.models.modulation import KVModulation

LAYERS, HEADS, WIDTH, TOKENS, BATCH = 2, 4, 16, 5, 3


def reference(projected, params, which, gating, per_head):
    """The definition: K * (1 + g_k); V * (1 + g_v) + b_v (film) or V * (1 + tanh g_v) (gate), computed in
    fp32."""
    x = projected.float()
    x = x.view(BATCH, TOKENS, HEADS, -1) if per_head else x

    def expand(p):
        return p[:, None, :, None] if per_head else p[:, None, :]

    if gating == "film":
        x = x * (1 + expand(params[:, which]))
        if which == 1:
            x = x + expand(params[:, 2])
    else:
        x = x * (1 + torch.tanh(expand(params[:, which])))
    return x.reshape(projected.shape).to(projected.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("per_head", [True, False])
@pytest.mark.parametrize("gating", ["film", "gate"])
def test_hooked_projections_follow_the_definition(gating, per_head, dtype):
    torch.manual_seed(0)
    modulation = KVModulation(
        control_dim=8,
        num_control_tokens=2,
        num_layers=LAYERS,
        num_heads=HEADS,
        width=WIDTH,
        gating_type=gating,
        per_head=per_head,
        hidden_dim=8,
        init_scale=0.5,
    )
    layers = [(nn.Linear(WIDTH, WIDTH).to(dtype), nn.Linear(WIDTH, WIDTH).to(dtype)) for _ in range(LAYERS)]
    modulation.attach(layers)
    params = modulation(torch.randn(BATCH, 2, 8))
    assert params.dtype == torch.float32 and params.abs().min() > 0
    inputs = torch.randn(BATCH, TOKENS, WIDTH).to(dtype)
    with torch.no_grad():
        plain = [[proj(inputs) for proj in pair] for pair in layers]
        with modulation.conditioned(params):
            modulated = [[proj(inputs) for proj in pair] for pair in layers]
        after = [[proj(inputs) for proj in pair] for pair in layers]
    for layer in range(LAYERS):
        for which in (0, 1):
            got = modulated[layer][which]
            want = reference(plain[layer][which], params[:, layer], which, gating, per_head)
            assert got.dtype == dtype
            # fp32: one fused multiply-add against a multiply then an add; fp16: the same fp32 values, rounded
            # once
            torch.testing.assert_close(
                got,
                want,
                atol=1e-6 if dtype == torch.float32 else 1e-3,
                rtol=1e-6 if dtype == torch.float32 else 1e-3,
            )
            assert not torch.allclose(got.float(), plain[layer][which].float())
            assert torch.equal(after[layer][which], plain[layer][which]), (
                "no modulation outside conditioned()"
            )


def test_gradients_reach_the_modulation_and_the_projection():
    torch.manual_seed(0)
    modulation = KVModulation(
        control_dim=8,
        num_control_tokens=2,
        num_layers=1,
        num_heads=HEADS,
        width=WIDTH,
        hidden_dim=8,
        init_scale=0.5,
    )
    key, value = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH)
    modulation.attach([(key, value)])
    with modulation.conditioned(modulation(torch.randn(BATCH, 2, 8))):
        (
            key(torch.randn(BATCH, TOKENS, WIDTH)).sum()
            + value(torch.randn(BATCH, TOKENS, WIDTH)).pow(2).sum()
        ).backward()
    assert modulation.net[-1].weight.grad.abs().sum() > 0
    assert key.weight.grad.abs().sum() > 0 and value.weight.grad.abs().sum() > 0

"""Blip2OPTGated.modulation_strength: the parameters generate() conditions the Q-Former with, per head."""

import pytest
import torch
from helpers.tiny_model import batch, build_tiny


def captured_generation_parameters(model, samples):
    """(B, L, P, units): what KVModulation.conditioned receives during one generate() call."""
    seen = []
    conditioned = model.kv_modulation.conditioned
    model.kv_modulation.conditioned = lambda params: (seen.append(params.detach()), conditioned(params))[1]
    try:
        model.generate(samples, num_beams=1, max_length=2)
    finally:
        model.kv_modulation.conditioned = conditioned
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize(
    "gating_type, per_head, identity_distance",
    [
        ("film", True, torch.abs),
        ("film", False, torch.abs),
        ("gate", True, lambda p: torch.tanh(p).abs()),
    ],
)
def test_strength_is_the_distance_from_identity_per_head(gating_type, per_head, identity_distance):
    model = build_tiny(gating={"type": gating_type, "per_head": per_head, "init_scale": 0.5}).eval()
    samples = batch()
    params = captured_generation_parameters(model, samples)
    strength = model.modulation_strength(samples)

    num_layers, num_params = 2, {"film": 3, "gate": 2}[gating_type]
    heads = model.kv_modulation.num_heads
    assert strength.shape == (4, num_layers, num_params, heads)
    expected = (
        identity_distance(params).view(4, num_layers, num_params, heads, -1).mean(-1)
    )  # channels -> heads
    torch.testing.assert_close(strength, expected)
    assert (strength > 0).all()
    # different images and questions move the heads differently
    assert not torch.allclose(strength[0], strength[1])


def test_fresh_modulation_is_zero_and_none_has_no_strength():
    assert torch.equal(build_tiny().modulation_strength(batch()), torch.zeros(4, 2, 3, 4))
    assert build_tiny(gating={"type": "none"}).modulation_strength(batch()) is None


def test_strength_from_style_features_alone_equals_that_from_images():
    """The web demo's reference: the images' style features are computed once, then only the prompt side
    runs for each new question."""
    model = build_tiny(gating={"type": "film", "init_scale": 0.5}).eval()
    samples = batch()
    with torch.no_grad():
        features = model.style_encoder(samples["image"])
    alone = model.modulation_strength({"style_features": features, "text_input": samples["text_input"]})
    torch.testing.assert_close(alone, model.modulation_strength(samples))

"""blip2_opt_gated is BLIP-2 plus new modules: compared with LAVIS's own Blip2OPT class, same weights."""

import logging
import types

import pytest
import torch
from helpers.blip2_standins import PROMPT, build_lavis_blip2opt, gated_config, make_sources
from lavis.common.registry import registry
from lavis.runners.runner_base import RunnerBase

import lavis_gated  # noqa: F401  (registration)
from lavis_gated.runners.runner_gated import frozen_parameter_names

NEW_MODULES = (
    "style_vocabulary",
    "style_encoder",
    "style_head",
    "style_to_qformer",
    "prompt_mapper",
    "kv_modulation",
)
ATOL = 1e-6


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return make_sources(str(tmp_path_factory.mktemp("blip2_sources")))


@pytest.fixture(scope="module")
def lavis_model(sources):
    return build_lavis_blip2opt(sources)


def new_module_keys(model):
    """State-dict keys of the modules BLIP-2 lacks (BatchNorm's num_batches_tracked: torch never reports it
    missing)."""
    return {
        k
        for k in model.state_dict()
        if k.split(".")[0] in NEW_MODULES and not k.endswith("num_batches_tracked")
    }


def build_gated(sources, **overrides):
    return registry.get_model_class("blip2_opt_gated").from_config(gated_config(sources, **overrides))


def gated_like(lavis_model, sources, **overrides):
    model = build_gated(sources, **overrides)
    model.load_trained_state(lavis_model.state_dict(), "LAVIS Blip2OPT")
    return model.eval()


def images(size=3, seed=0):
    return torch.randn(size, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


ANSWERS = ["pop art", "a small red circle", "cubism"]


def lavis_samples():
    return {"image": images(), "text_input": [f"{PROMPT} {a}" for a in ANSWERS], "prompt": PROMPT}


def gated_samples():
    return {"image": images(), "answer": ANSWERS, "prompt": PROMPT, "style": ["pop art", None, "cubism"]}


def qformer_output_of(model, run):
    """The Q-Former's last hidden state inside `run()` (the model's own forward path)."""
    captured = []
    handle = model.Qformer.bert.register_forward_hook(
        lambda m, i, out: captured.append(out.last_hidden_state)
    )
    try:
        result = run()
    finally:
        handle.remove()
    return captured[0], result


@pytest.mark.parametrize("gating", ["film", "gate", "none"])
def test_identical_to_lavis_blip2opt_at_start(lavis_model, sources, gating):
    gated = gated_like(lavis_model, sources, gating={"type": gating})
    with torch.no_grad():
        q_lavis, out_lavis = qformer_output_of(lavis_model, lambda: lavis_model(lavis_samples()))
        q_gated, out_gated = qformer_output_of(gated, lambda: gated(gated_samples()))
    assert (q_lavis - q_gated).abs().max() <= ATOL
    assert abs(out_lavis["loss"].item() - out_gated["lm_loss"].item()) <= ATOL
    for beams in (1, 3):
        expected = lavis_model.generate({"image": images(), "prompt": PROMPT}, num_beams=beams, max_length=6)
        assert (
            gated.generate({"image": images(), "prompt": PROMPT}, num_beams=beams, max_length=6) == expected
        )


def test_one_perturbed_modulation_weight_breaks_the_identity(lavis_model, sources):
    gated = gated_like(lavis_model, sources)
    with torch.no_grad():
        gated.kv_modulation.net[-1].bias[gated.kv_modulation.units] = 0.5  # layer 0: V scale of head 0
        q_lavis, _ = qformer_output_of(lavis_model, lambda: lavis_model(lavis_samples()))
        q_gated, _ = qformer_output_of(gated, lambda: gated(gated_samples()))
    assert (q_lavis - q_gated).abs().max() > 1e-4


def test_lavis_state_dict_loads_missing_exactly_the_new_modules(lavis_model, sources, caplog):
    gated = build_gated(sources)
    with caplog.at_level(logging.INFO):
        incompatible = gated.load_trained_state({"model": lavis_model.state_dict()}, "blip2.pth")
    assert incompatible.unexpected_keys == []
    assert set(incompatible.missing_keys) == new_module_keys(gated)
    assert "new modules not in it: {'style_vocabulary': 1, 'style_encoder':" in caplog.text


def test_lavis_runner_trainable_only_checkpoint_loads(lavis_model, sources, tmp_path):
    """The checkpoint LAVIS's RunnerBase._save_checkpoint writes (frozen parameters dropped)."""
    trainable = [p for p in lavis_model.parameters() if p.requires_grad]
    runner = types.SimpleNamespace(
        unwrap_dist_model=lambda m: m,
        model=lavis_model,
        optimizer=torch.optim.AdamW(trainable),
        config=types.SimpleNamespace(to_dict=lambda: {"model": {"arch": "blip2_opt"}}),
        scaler=None,
        output_dir=str(tmp_path),
    )
    RunnerBase._save_checkpoint(runner, cur_epoch=0, is_best=True)
    gated = build_gated(sources)
    incompatible = gated.load_checkpoint(str(tmp_path / "checkpoint_best.pth"))
    assert incompatible.unexpected_keys == []
    frozen_prefixes = ("visual_encoder.", "opt_model.")
    assert {k for k in incompatible.missing_keys if not k.startswith(frozen_prefixes)} == new_module_keys(
        gated
    )
    assert torch.equal(gated.opt_proj.weight, lavis_model.opt_proj.weight)
    assert torch.equal(
        gated.Qformer.bert.encoder.layer[0].crossattention.self.key.weight,
        lavis_model.Qformer.bert.encoder.layer[0].crossattention.self.key.weight,
    )


def test_own_trainable_only_checkpoint_reports_no_missing_trainable_key(sources, caplog):
    """GatedRunner drops every frozen name, tied aliases too (OPT's lm_head.weight is embed_tokens.weight):
    loading such a file must not report the alias as a trainable key gone missing."""
    gated = build_gated(sources)
    frozen = frozen_parameter_names(gated)
    assert "opt_model.lm_head.weight" in frozen
    trainable_only = {k: v for k, v in gated.state_dict().items() if k not in frozen}
    with caplog.at_level(logging.INFO):
        gated.load_trained_state({"model": trainable_only}, "checkpoint_best.pth")
    assert "other trainable keys not in it: []" in caplog.text


def test_stage1_parts_are_ignored_but_an_unknown_key_is_an_error(lavis_model, sources):
    gated = build_gated(sources)
    state = dict(lavis_model.state_dict())
    state["Qformer.cls.predictions.bias"] = torch.zeros(3)  # BLIP-2 stage 1 parts Blip2OPT drops
    state["vision_proj.weight"] = torch.zeros(2, 2)
    gated.load_trained_state(state, "stage1.pth")
    state["opt_projection.weight"] = torch.zeros(2, 2)
    with pytest.raises(
        ValueError,
        match=r"stage1\.pth does not fit blip2_opt_gated: 1 unexpected keys \['opt_projection.weight'\]",
    ):
        gated.load_trained_state(state, "stage1.pth")

"""Every blip2_opt_gated model type at its real dimensions, without weight memory, against LAVIS's Blip2OPT.

Parameters are created on the meta device (accelerate's init_empty_weights: shapes without storage; other
tensors stay real, as LAVIS's EVA ViT calls .item() on a linspace in __init__), from local configs with the
real dimensions (lavis_gated.offline.standins). Checked per part: parameter counts (BLIP-2's parts equal
LAVIS's own Blip2OPT of the same type; the new parts equal counts computed here from the config), the
trainable set, the style feature's width, BLIP-2's published sizes, and a training step's shapes and
gradients at full width.
"""

import math

import pytest
import torch
from accelerate import init_empty_weights
from lavis.common.registry import registry
from lavis.models.blip2_models.blip2_opt import Blip2OPT
from omegaconf import OmegaConf

import lavis_gated  # noqa: F401  (registration)
from lavis_gated.offline.standins import SIZES, build_lavis_blip2opt, random_model_config
from lavis_gated.tasks.style_captioning import StyleCaptioningTask

MODEL_CLS = registry.get_model_class("blip2_opt_gated")
TYPES = sorted(MODEL_CLS.PRETRAINED_MODEL_CONFIG_DICT)
BLIP2_PARTS = ("vit", "ln_vision", "qformer", "query_tokens", "opt_proj", "opt")
FROZEN_PARTS = ("opt", "style_cnn")  # and the ViT where freeze_vit
# part -> parameter-name prefix (LoRA's adapters are their own part, wherever they sit)
PREFIXES = {
    "vit": "visual_encoder.",
    "ln_vision": "ln_vision.",
    "qformer": "Qformer.",
    "query_tokens": "query_tokens",
    "opt_proj": "opt_proj.",
    "opt": "opt_model.",
    "style_cnn": "style_encoder.",
    "style_head": "style_head.",
    "style_to_qformer": "style_to_qformer.",
    "prompt_mapper": "prompt_mapper.",
    "modulation": "kv_modulation.",
}
# timm's published parameter counts with the 1000-class ImageNet classifier, and the pooled feature width F
# (the classifier, F * 1000 + 1000 parameters, is left out of the style encoder)
CNN_PARAMS = {"efficientnet_b3": (12_233_232, 1536), "resnet18": (11_689_512, 512)}
VIT_WIDTH = {"eva_clip_g": 1408, "eva_tiny": 128}  # EVA's embed_dim: the cross-attention K/V input width


def part_of(name):
    if ".lora_" in name:
        return "lora"
    return next(part for part, prefix in PREFIXES.items() if name.startswith(prefix))


def count_by_part(model, trainable=None):
    counts = {}
    for name, p in model.named_parameters():
        if trainable is None or p.requires_grad == trainable:
            counts[part_of(name)] = counts.get(part_of(name), 0) + p.numel()
    return counts


def on_meta(build):
    """build() with every parameter on the meta device. init_empty_weights registers a new Parameter for each
    one, which unties OPT's lm_head from its input embedding: tied again here, as OPT builds it."""
    with init_empty_weights():
        model = build()
    model.opt_model.tie_weights()
    assert model.opt_model.lm_head.weight is model.opt_model.get_input_embeddings().weight
    return model


def lavis_of_type(model_type, sources):
    """LAVIS's Blip2OPT built from LAVIS's own config of the type (the tiny type: from tiny.yaml's values)."""
    if model_type == "tiny":
        cfg, vit = MODEL_CLS.type_config("tiny"), SIZES["tiny"]["vit"]
    else:
        cfg, vit = OmegaConf.load(Blip2OPT.default_config_path(model_type)).model, "eva_clip_g"
    return on_meta(
        lambda: build_lavis_blip2opt(
            sources,
            vit,
            img_size=cfg.image_size,
            drop_path_rate=cfg.drop_path_rate,
            vit_precision=cfg.vit_precision,
            freeze_vit=cfg.freeze_vit,
            num_query_token=cfg.num_query_token,
            prompt=cfg.get("prompt", ""),
        )
    )


def expected_new_parts(cfg, model):
    """Parameter counts of the new parts, from the config and the BLIP-2 widths (not from their modules)."""
    bert, opt = model.Qformer.config, model.opt_model.config  # the stand-ins' config.json values
    features = CNN_PARAMS[cfg.style_encoder.arch][1]
    cnn = CNN_PARAMS[cfg.style_encoder.arch][0] - (features * 1000 + 1000)
    styles = len(cfg.style_names)
    width, vision = bert.hidden_size, VIT_WIDTH[cfg.vit_model]
    mapper, gating, lora = cfg.prompt_mapper, cfg.gating, cfg.lora
    h, tokens = mapper.hidden_size, mapper.num_tokens
    prompt_mapper = (
        (width * h + h)
        + (opt.word_embed_proj_dim * h + h)
        + tokens * h
        + 3 * 2 * h
        + (3 * h * h + 3 * h + h * h + h)
        + (h * 4 * h + 4 * h + 4 * h * h + h)
    )
    # cross-attention in layers 0, freq, 2 * freq, ...
    layers = math.ceil(bert.num_hidden_layers / cfg.cross_attention_freq)
    units = bert.num_attention_heads if gating.per_head else width
    outputs = layers * {"film": 3, "gate": 2}[gating.type] * units
    hidden = gating.hidden_dim
    modulation = (tokens * h * hidden + hidden) + (hidden * outputs + outputs)
    expected = {
        "style_cnn": cnn,
        "style_head": features * styles + styles,
        "style_to_qformer": features * width + width,
        "prompt_mapper": prompt_mapper,
        "modulation": modulation,
    }
    if lora.enabled:  # A (rank x in) and B (out x rank) on each cross-attention layer's key and value
        expected["lora"] = layers * 2 * lora.rank * (vision + width)
    return expected


def trainable_parts(cfg):
    frozen = set(FROZEN_PARTS) | ({"vit"} if cfg.freeze_vit else set())
    return set(PREFIXES) - frozen | ({"lora"} if cfg.lora.enabled else set())


CASES = [(t, {}) for t in TYPES] + [("pretrain_opt2.7b", {"lora": {"enabled": True}})]


@pytest.fixture(scope="module", params=CASES, ids=[t + ("-lora" if o else "") for t, o in CASES])
def built(request, tmp_path_factory):
    model_type, overrides = request.param
    cfg, sources = random_model_config(model_type, str(tmp_path_factory.mktemp("sources")), **overrides)
    return model_type, cfg, on_meta(lambda: MODEL_CLS.from_config(cfg)), lavis_of_type(model_type, sources)


def test_no_weight_memory(built):
    _, _, model, lavis = built
    for m in (model, lavis):
        assert {p.device.type for p in m.parameters()} == {"meta"}


def test_blip2_parts_count_what_lavis_blip2opt_counts(built):
    _, _, model, lavis = built
    ours, theirs = count_by_part(model), count_by_part(lavis)
    assert set(theirs) == set(BLIP2_PARTS)
    assert {part: ours[part] for part in BLIP2_PARTS} == theirs
    assert {
        part: n for part, n in count_by_part(model, trainable=True).items() if part in BLIP2_PARTS
    } == count_by_part(lavis, trainable=True), "BLIP-2's trainable set differs from LAVIS's"


def test_new_parts_count_what_their_config_says(built):
    _, cfg, model, _ = built
    assert {
        part: n for part, n in count_by_part(model).items() if part not in BLIP2_PARTS
    } == expected_new_parts(cfg, model)


def test_trainable_set_is_the_intended_one(built):
    _, cfg, model, _ = built
    trainable = trainable_parts(cfg)
    wrong = [name for name, p in model.named_parameters() if p.requires_grad != (part_of(name) in trainable)]
    assert not wrong, wrong[:10]
    assert set(count_by_part(model)) == set(PREFIXES) | ({"lora"} if cfg.lora.enabled else set())


def test_style_feature_has_the_width_its_consumers_expect(built):
    _, cfg, model, _ = built
    size = model.style_encoder.image_size  # the configured size, or the weights' timm config's
    assert size == (
        cfg.style_encoder.image_size or {"efficientnet_b3": 288, "resnet18": 224}[cfg.style_encoder.arch]
    )
    feature = model.style_encoder.to("meta")(torch.empty(2, 3, size, size, device="meta"))
    assert feature.shape == (2, CNN_PARAMS[cfg.style_encoder.arch][1])
    assert model.style_to_qformer.in_features == model.style_head.in_features == feature.shape[1]


def test_blip2_matches_the_papers_sizes(built):
    """BLIP-2 (Li et al. 2023), Table 1: ViT-g + OPT-2.7B 107M trainable, 3.8B total; ViT-g + OPT-6.7B 108M,
    7.8B. Trainable counts round to the nearest million. The totals round to the nearest tenth of a billion
    once the ViT-g's 40th layer is counted: the paper reports EVA ViT-g as published (40 layers, 1.0B), while
    BLIP-2 uses it without its last layer (39, as LAVIS's create_eva_vit_g builds it); without that layer the
    totals are 3.74B and 7.75B."""
    model_type, cfg, model, lavis = built
    if model_type == "tiny" or not cfg.freeze_vit:
        pytest.skip("the paper gives sizes for the frozen ViT-g only")
    paper = {"pretrain_opt2.7b": (107, 3.8), "pretrain_opt6.7b": (108, 7.8)}[model_type]
    for m in (model, lavis):
        blip2 = count_by_part(m)
        trainable = sum(n for part, n in count_by_part(m, trainable=True).items() if part in BLIP2_PARTS)
        vit_layer = sum(p.numel() for p in m.visual_encoder.blocks[0].parameters())
        total = sum(blip2[part] for part in BLIP2_PARTS) + vit_layer
        assert (round(trainable / 1e6), round(total / 1e8) / 10) == paper


def test_a_training_step_at_full_width(built):
    """The style_captioning task's loss and its backward, on meta tensors (shapes and dtypes, no arithmetic):
    logits over every OPT embedding row, a gradient of the parameter's shape on each trainable parameter, none
    on a frozen one. The meta device has no autocast, so the parts stored in fp16 are taken as fp32 here."""
    _, cfg, model, _ = built
    model = model.to("meta").float().train()
    size, batch = cfg.image_size, 2
    samples = {
        "image": torch.empty(batch, 3, size, size, device="meta"),
        "text_input": ["what style is this painting?", "which shape is in the middle?"],
        "answer": ["impressionism", "a small red circle"],
        "question_type": ["style", "shape"],
        "style": ["impressionism", None],
    }
    out = model(samples)
    assert out["logits"].shape == (batch, out["targets"].shape[1], model.opt_model.config.vocab_size)
    assert out["image_style_logits"].shape == (batch, len(model.vocabulary))
    task = StyleCaptioningTask(
        lm_weight=1.0,
        style_name_weight=0.1,
        style_kl_weight=0.1,
        style_ce_weight=1.0,
        style_question_types=["style"],
    )
    loss = task.train_step(model, samples)
    assert loss.shape == () and loss.device.type == "meta"
    loss.backward()
    params = dict(model.named_parameters())
    missing = [
        n for n, p in params.items() if p.requires_grad and (p.grad is None or p.grad.shape != p.shape)
    ]
    frozen_with_grad = [n for n, p in params.items() if not p.requires_grad and p.grad is not None]
    assert not missing and not frozen_with_grad, (missing[:10], frozen_with_grad[:10])

"""LAVIS's BLIP-2 OPT model types (pretrain_opt2.7b/6.7b, caption_coco_opt2.7b/6.7b): every source from local
files (air-gapped), or a clear error offline."""

import socket

import pytest
import timm
import torch
from helpers.blip2_standins import IMAGE_SIZE, build_lavis_blip2opt, gated_config, make_sources
from lavis.common.registry import registry
from lavis.models import load_model_and_preprocess
from omegaconf import OmegaConf

import lavis_gated  # noqa: F401  (registration)
from lavis_gated.models.backbones import SourceUnavailableError

MODEL_CLS = registry.get_model_class("blip2_opt_gated")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An air-gapped host: host names do not resolve, and the download caches are empty."""

    def no_dns(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, f"Name or service not known: {host}")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TRANSFORMERS_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


REAL_TYPES = ("pretrain_opt2.7b", "pretrain_opt6.7b", "caption_coco_opt2.7b", "caption_coco_opt6.7b")
LAVIS_URL = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/"


def local_type_config(model_type, tmp_path, monkeypatch):
    """The type's YAML with its sources replaced by local stand-ins: the BERT and OPT folders, the EVA weights
    file, a BLIP-2 checkpoint written from LAVIS's Blip2OPT (and, for the caption types, a finetuned one that
    differs from it), and an EfficientNet-B3 file. Only the sizes are the tiny ones (vit_model is a config
    value too); the code path is the real one.
    Returns (config path, pretrained state dict, finetuned state dict or None)."""
    sources = make_sources(str(tmp_path))
    pretrained = build_lavis_blip2opt(sources).state_dict()
    monkeypatch.chdir(tmp_path.parent)
    torch.save({"model": pretrained}, tmp_path / "blip2_pretrained.pth")
    torch.save(
        timm.create_model("efficientnet_b3", num_classes=3).state_dict(), tmp_path / "effnet_b3_wikiart.pth"
    )
    cfg = OmegaConf.load(MODEL_CLS.default_config_path(model_type))
    local = gated_config(sources)
    for key in ("qformer_bert", "opt_model", "vit_weights", "num_query_token", "image_size"):
        cfg.model[key] = local[key]
    cfg.model.vit_model = "eva_tiny"
    cfg.model.pretrained = str(tmp_path / "blip2_pretrained.pth")
    finetuned = None
    if cfg.model.load_finetuned:
        moved = ("opt_proj.weight", "visual_encoder.patch_embed.proj.weight")  # the ViT is finetuned too
        finetuned = {k: v + 1 if k in moved else v for k, v in pretrained.items()}
        torch.save({"model": finetuned}, tmp_path / "blip2_finetuned.pth")
        cfg.model.finetuned = str(tmp_path / "blip2_finetuned.pth")
    cfg.model.style_encoder.checkpoint = str(tmp_path / "effnet_b3_wikiart.pth")
    cfg.model.style_encoder.image_size = 64
    for split in ("train", "eval"):
        cfg.preprocess.vis_processor[split].image_size = IMAGE_SIZE
    path = tmp_path / "type_local.yaml"
    OmegaConf.save(cfg, path)
    return str(path), pretrained, finetuned


def test_every_lavis_blip2_opt_type_is_registered():
    from lavis.models.blip2_models.blip2_opt import Blip2OPT

    assert set(REAL_TYPES) == set(Blip2OPT.PRETRAINED_MODEL_CONFIG_DICT)
    assert set(MODEL_CLS.PRETRAINED_MODEL_CONFIG_DICT) == {*REAL_TYPES, "tiny"}


@pytest.mark.parametrize("model_type", REAL_TYPES)
def test_type_has_lavis_dimensions_sources_and_defaults(model_type):
    """The keys LAVIS's own config of the type sets have its values here (its vit_model is implicit:
    eva_clip_g). The pretrain types keep this project's question prompt and text processor (answers to
    questions)."""
    from lavis.models.blip2_models.blip2_opt import Blip2OPT

    ours = OmegaConf.load(MODEL_CLS.default_config_path(model_type))
    ours.model = MODEL_CLS.type_config(model_type)  # the YAML over the ModelConfig defaults
    lavis = OmegaConf.load(Blip2OPT.default_config_path(model_type))
    keys = (
        "load_finetuned",
        "pretrained",
        "image_size",
        "drop_path_rate",
        "use_grad_checkpoint",
        "vit_precision",
        "freeze_vit",
        "num_query_token",
        "opt_model",
    )
    assert {k: ours.model[k] for k in keys} == {k: lavis.model[k] for k in keys}
    assert ours.model.vit_model == "eva_clip_g" and ours.model.qformer_bert == "bert-base-uncased"
    assert OmegaConf.to_container(ours.preprocess.vis_processor) == OmegaConf.to_container(
        lavis.preprocess.vis_processor
    )
    if lavis.model.load_finetuned:
        assert ours.model.finetuned == lavis.model.finetuned and ours.model.prompt == lavis.model.prompt
        assert OmegaConf.to_container(ours.preprocess) == OmegaConf.to_container(lavis.preprocess)
    # the style CNN's input size and filter: those of the weights' timm config (EfficientNet-B3: 320 px,
    # bicubic)
    assert ours.model.style_encoder.arch == "efficientnet_b3" and ours.model.style_encoder.image_size is None


@pytest.mark.parametrize("model_type", REAL_TYPES)
def test_type_from_local_sources_builds_and_generates(model_type, tmp_path, monkeypatch):
    config_path, pretrained, finetuned = local_type_config(model_type, tmp_path, monkeypatch)
    monkeypatch.setitem(MODEL_CLS.PRETRAINED_MODEL_CONFIG_DICT, model_type, config_path)
    model, vis, txt = load_model_and_preprocess("blip2_opt_gated", model_type=model_type, is_eval=True)
    expected = finetuned or pretrained
    assert torch.equal(model.opt_proj.weight, expected["opt_proj.weight"]), "BLIP-2 checkpoint not loaded"
    # the pretrain types store the ViT in fp16 (then computed in fp32 on CPU): equal up to fp16 rounding
    torch.testing.assert_close(
        model.visual_encoder.patch_embed.proj.weight,
        expected["visual_encoder.patch_embed.proj.weight"],
        rtol=1e-3,
        atol=1e-3,
    )
    lm_head = pretrained["opt_model.lm_head.weight"]
    assert torch.equal(model.opt_model.lm_head.weight, lm_head), "OPT folder not loaded"
    trains_vit = finetuned is not None  # LAVIS's caption types set freeze_vit False
    assert all(p.requires_grad == trains_vit for p in model.visual_encoder.parameters())
    assert not any(p.requires_grad for p in model.opt_model.parameters())
    from PIL import Image

    image = vis["eval"](Image.new("RGB", (48, 40), (20, 90, 200))).unsqueeze(0)
    answers = model.predict_answers(
        {"image": image, "text_input": [txt["eval"]("Which style is it?")]}, num_beams=2, max_len=4
    )
    assert len(answers) == 1 and isinstance(answers[0], str)
    assert model.visual_encoder.patch_embed.proj.weight.dtype == torch.float32, (
        "fp16 ViT must run in fp32 on CPU"
    )


@pytest.mark.parametrize(
    "model_type, key, value, hint",
    [
        ("pretrain_opt2.7b", "qformer_bert", "bert-base-uncased", "HF_HUB_OFFLINE"),
        ("pretrain_opt6.7b", "qformer_bert", "bert-base-uncased", "HF_HUB_OFFLINE"),
        (
            "caption_coco_opt2.7b",
            "finetuned",
            LAVIS_URL + "blip2_caption_opt2.7b.pth",
            "hub/checkpoints/blip2_caption_opt2.7b.pth",
        ),
        (
            "caption_coco_opt6.7b",
            "finetuned",
            LAVIS_URL + "blip2_caption_opt6.7b.pth",
            "hub/checkpoints/blip2_caption_opt6.7b.pth",
        ),
    ],
)
def test_type_with_hub_names_offline_names_the_source(offline, model_type, key, value, hint):
    """The first source each type reads (the caption types read their finetuned checkpoint first, for its
    style vocabulary) is named, with how to provide it locally."""
    with pytest.raises(SourceUnavailableError) as error:
        load_model_and_preprocess("blip2_opt_gated", model_type=model_type, is_eval=True)
    assert f"model.{key}: could not load {value!r}" in str(error.value) and hint in str(error.value)


@pytest.mark.parametrize(
    "key, value, hint",
    [
        ("opt_model", "facebook/opt-2.7b", "local directory"),
        (
            "vit_weights",
            "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/eva_vit_g.pth",
            "hub/checkpoints/eva_vit_g.pth",
        ),
    ],
)
def test_each_unreachable_source_is_named(offline, tmp_path, key, value, hint):
    sources = make_sources(str(tmp_path / "sources"))
    with pytest.raises(SourceUnavailableError) as error:
        MODEL_CLS.from_config(gated_config(sources, **{key: value}))
    assert f"model.{key}: could not load {value!r}" in str(error.value) and hint in str(error.value)

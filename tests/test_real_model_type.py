"""The `pretrain_opt2.7b` model type: every source from local files (air-gapped), or a clear error offline."""
import socket

import pytest
import timm
import torch
from lavis.common.registry import registry
from lavis.models import load_model_and_preprocess
from omegaconf import OmegaConf

import lavis_gated  # noqa: F401  (registration)
from lavis_gated.models.backbones import SourceUnavailableError
from tests.blip2_standins import IMAGE_SIZE, build_lavis_blip2opt, gated_config, make_sources

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


def local_pretrain_config(tmp_path, monkeypatch):
    """pretrain_opt2.7b.yaml with its sources replaced by local stand-ins: the BERT and OPT folders, the
    EVA weights file, a BLIP-2 checkpoint written from LAVIS's Blip2OPT, and an EfficientNet-B3 file.
    Only the ViT's size is the tiny one (vit_model is a config value too); the code path is the real one."""
    sources = make_sources(str(tmp_path))
    blip2 = build_lavis_blip2opt(sources)
    monkeypatch.chdir(tmp_path.parent)
    torch.save({"model": blip2.state_dict()}, tmp_path / "blip2_pretrained_opt2.7b.pth")
    torch.save(timm.create_model("efficientnet_b3", num_classes=3).state_dict(), tmp_path / "effnet_b3_wikiart.pth")
    cfg = OmegaConf.load(MODEL_CLS.default_config_path("pretrain_opt2.7b"))
    local = gated_config(sources)
    for key in ("qformer_bert", "opt_model", "vit_weights", "num_query_token", "image_size"):
        cfg.model[key] = local[key]
    cfg.model.vit_model = "eva_tiny"
    cfg.model.pretrained = str(tmp_path / "blip2_pretrained_opt2.7b.pth")
    cfg.model.style_encoder.checkpoint = str(tmp_path / "effnet_b3_wikiart.pth")
    cfg.model.style_encoder.image_size = 64
    for split in ("train", "eval"):
        cfg.preprocess.vis_processor[split].image_size = IMAGE_SIZE
    path = tmp_path / "pretrain_local.yaml"
    OmegaConf.save(cfg, path)
    return str(path), blip2


def test_pretrain_type_from_local_sources_builds_and_generates(tmp_path, monkeypatch):
    config_path, blip2 = local_pretrain_config(tmp_path, monkeypatch)
    monkeypatch.setitem(MODEL_CLS.PRETRAINED_MODEL_CONFIG_DICT, "pretrain_opt2.7b", config_path)
    model, vis, txt = load_model_and_preprocess("blip2_opt_gated", model_type="pretrain_opt2.7b", is_eval=True)
    assert torch.equal(model.opt_proj.weight, blip2.opt_proj.weight), "BLIP-2 checkpoint not loaded"
    assert torch.equal(model.opt_model.lm_head.weight, blip2.opt_model.lm_head.weight), "OPT folder not loaded"
    from PIL import Image

    image = vis["eval"](Image.new("RGB", (48, 40), (20, 90, 200))).unsqueeze(0)
    answers = model.predict_answers({"image": image, "text_input": [txt["eval"]("Which style is it?")]},
                                    num_beams=2, max_len=4)
    assert len(answers) == 1 and isinstance(answers[0], str)
    assert model.visual_encoder.patch_embed.proj.weight.dtype == torch.float32, "fp16 ViT must run in fp32 on CPU"


def test_pretrain_type_with_hub_names_offline_names_the_source(offline):
    with pytest.raises(SourceUnavailableError) as error:
        load_model_and_preprocess("blip2_opt_gated", model_type="pretrain_opt2.7b", is_eval=True)
    message = str(error.value)
    assert "model.qformer_bert: could not load 'bert-base-uncased'" in message
    assert "local directory" in message and "HF_HUB_OFFLINE" in message


@pytest.mark.parametrize("key, value, hint", [
    ("opt_model", "facebook/opt-2.7b", "local directory"),
    ("vit_weights", "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/eva_vit_g.pth",
     "hub/checkpoints/eva_vit_g.pth"),
])
def test_each_unreachable_source_is_named(offline, tmp_path, key, value, hint):
    sources = make_sources(str(tmp_path / "sources"))
    with pytest.raises(SourceUnavailableError) as error:
        MODEL_CLS.from_config(gated_config(sources, **{key: value}))
    assert f"model.{key}: could not load {value!r}" in str(error.value) and hint in str(error.value)

"""Local stand-ins for BLIP-2's downloads, at toy size, and LAVIS's own Blip2OPT built from them.

The files mirror what the real sources provide: a BERT folder with weights (the Q-Former's
`bert-base-uncased`), an OPT folder written by save_pretrained (`facebook/opt-2.7b`), an EVA ViT weights
file (`eva_vit_g.pth`) and a BLIP-2 checkpoint ({"model": state_dict}, `blip2_pretrained_opt2.7b.pth`).
"""
import contextlib
import os
import shutil

import torch

from lavis_gated.models import backbones

TINY_ASSETS = os.path.join(backbones.PACKAGE_CONFIG_DIR, "assets", "tiny")
PROMPT = "Question: what is shown? Answer:"
IMAGE_SIZE = 32
NUM_QUERY_TOKEN = 8


def make_sources(root):
    """Write the stand-in files under `root`; returns {name: path}."""
    from lavis.models.blip2_models.modeling_opt import OPTConfig, OPTForCausalLM
    from lavis.models.blip2_models.Qformer import BertConfig, BertLMHeadModel

    bert = os.path.join(root, "bert-base-uncased")  # the name LAVIS's Blip2Base asks for, as a local folder
    shutil.copytree(os.path.join(TINY_ASSETS, "bert"), bert)
    with backbones.seeded(11):
        BertLMHeadModel(BertConfig.from_pretrained(bert)).save_pretrained(bert)

    opt = os.path.join(root, "opt")
    shutil.copytree(os.path.join(TINY_ASSETS, "opt"), opt)
    with backbones.seeded(12):
        OPTForCausalLM(OPTConfig.from_pretrained(opt)).save_pretrained(opt)

    eva = os.path.join(root, "eva_vit.pth")
    with backbones.seeded(13):
        torch.save(backbones.build_vision_encoder("eva_tiny", IMAGE_SIZE, precision="fp32").state_dict(), eva)
    return {"root": root, "bert": bert, "opt": opt, "eva": eva}


@contextlib.contextmanager
def lavis_downloads_pointed_at(sources, monkeypatch):
    """LAVIS's hard-coded sources resolved locally: "bert-base-uncased" is a folder in the working
    directory (transformers prefers a local folder of that name), and create_eva_vit_g, which builds
    ViT-g from a fixed URL, builds the tiny EVA from the local weights file instead."""
    import lavis.models.blip2_models.blip2 as blip2

    def create_tiny_eva(img_size=224, drop_path_rate=0.4, use_checkpoint=False, precision="fp16"):
        return backbones.build_vision_encoder("eva_tiny", img_size, drop_path_rate, use_checkpoint, precision, sources["eva"])

    monkeypatch.chdir(sources["root"])
    monkeypatch.setattr(blip2, "create_eva_vit_g", create_tiny_eva)
    yield


def build_lavis_blip2opt(sources, monkeypatch):
    """LAVIS's Blip2OPT class itself at toy size, in fp32 (as load_model_and_preprocess leaves it on CPU)."""
    from lavis.models.blip2_models.blip2_opt import Blip2OPT

    with lavis_downloads_pointed_at(sources, monkeypatch), backbones.seeded(14):
        model = Blip2OPT(img_size=IMAGE_SIZE, vit_precision="fp32", num_query_token=NUM_QUERY_TOKEN,
                         opt_model=sources["opt"], prompt=PROMPT, max_txt_len=32)
    return model.float().eval()


def gated_config(sources, **overrides):
    """The `tiny` model config with every source pointed at the stand-ins (nothing random-initialised)."""
    from omegaconf import OmegaConf

    from lavis.common.registry import registry

    cfg = OmegaConf.load(registry.get_model_class("blip2_opt_gated").default_config_path("tiny")).model
    return OmegaConf.merge(cfg, {
        "image_size": IMAGE_SIZE, "num_query_token": NUM_QUERY_TOKEN, "prompt": PROMPT,
        "qformer_bert": sources["bert"], "qformer_random_init": False,
        "opt_model": sources["opt"], "opt_random_init": False, "vit_weights": sources["eva"],
        "style_names": ["cubism", "impressionism", "pop art"], **overrides,
    })

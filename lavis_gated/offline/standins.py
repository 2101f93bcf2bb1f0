"""Local stand-ins for BLIP-2's downloads, at toy and at real sizes, and LAVIS's own Blip2OPT built from them.

BLIP-2 OPT needs `bert-base-uncased` (the Q-Former), `facebook/opt-*` (the LLM and its slow tokenizer) and the
EVA ViT-g weights; none may be fetched by tests, benchmarks or the real-size smoke run. Here each is a local
folder or file: a config.json with the real dimensions (data below) or a toy one, the tokenizer files, and for
toy sizes optionally random weights. Real sizes get a synthetic byte-level BPE tokenizer as large as OPT's
(50265 tokens), so their 50272 embedding rows outnumber the tokenizer's tokens exactly as the real pair does.
"""

import contextlib
import os
import shutil
from unittest import mock

import torch

from lavis_gated.models import backbones
from lavis_gated.models.backbones import PACKAGE_CONFIG_DIR, seeded
from lavis_gated.offline.tokenizer import update_json, write_opt_tokenizer

TINY_ASSETS = os.path.join(PACKAGE_CONFIG_DIR, "assets", "tiny")

# Hugging Face configs of the real sources (bert-base-uncased; facebook/opt-2.7b, facebook/opt-6.7b)
BERT_BASE = dict(
    model_type="bert",
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    vocab_size=30522,
    max_position_embeddings=512,
    type_vocab_size=2,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    initializer_range=0.02,
    layer_norm_eps=1e-12,
    pad_token_id=0,
)


def _opt_config(hidden_size, ffn_dim):
    return dict(
        model_type="opt",
        hidden_size=hidden_size,
        word_embed_proj_dim=hidden_size,
        num_hidden_layers=32,
        num_attention_heads=32,
        ffn_dim=ffn_dim,
        vocab_size=50272,
        max_position_embeddings=2048,
        do_layer_norm_before=True,
        activation_function="relu",
        dropout=0.1,
        attention_dropout=0.0,
        init_std=0.02,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
    )


OPT_CONFIGS = {"facebook/opt-2.7b": _opt_config(2560, 10240), "facebook/opt-6.7b": _opt_config(4096, 16384)}

# vit: backbones.VIT_ARCHITECTURES key; bert/opt: config.json values over the tiny assets' configs;
# opt_tokenizer: "tiny" (the packaged one) or "opt-size" (synthetic, OPT_TOKENIZER_SIZE tokens)
SIZES = {
    "tiny": dict(
        vit="eva_tiny",
        image_size=64,
        num_query_token=8,
        bert={},
        opt={},
        opt_tokenizer="tiny",
        style_encoder=dict(arch="resnet18", image_size=64),
        model_type="tiny",
    ),
    # CPU-benchmark size: a ViT-S-like EVA, a 6-layer Q-Former, a 6-layer OPT
    "mid": dict(
        vit="eva_mid",
        image_size=224,
        num_query_token=32,
        opt_tokenizer="tiny",
        bert=dict(
            BERT_BASE, hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1536
        ),
        opt=dict(
            OPT_CONFIGS["facebook/opt-2.7b"],
            hidden_size=512,
            word_embed_proj_dim=512,
            num_hidden_layers=6,
            num_attention_heads=8,
            ffn_dim=2048,
            vocab_size=8192,
        ),
        style_encoder=dict(arch="efficientnet_b0", image_size=128),
        model_type="pretrain_opt2.7b",
    ),
    "full": dict(
        vit="eva_clip_g",
        image_size=224,
        num_query_token=32,
        bert=BERT_BASE,
        opt=OPT_CONFIGS["facebook/opt-2.7b"],
        opt_tokenizer="opt-size",
        style_encoder=dict(arch="efficientnet_b3", image_size=300),
        model_type="pretrain_opt2.7b",
    ),
    "full_opt6.7b": dict(
        vit="eva_clip_g",
        image_size=224,
        num_query_token=32,
        bert=BERT_BASE,
        opt=OPT_CONFIGS["facebook/opt-6.7b"],
        opt_tokenizer="opt-size",
        style_encoder=dict(arch="efficientnet_b3", image_size=300),
        model_type="pretrain_opt6.7b",
    ),
}
REAL_SIZE_OF_OPT = {"facebook/opt-2.7b": "full", "facebook/opt-6.7b": "full_opt6.7b"}
TOY_SIZES = ("tiny", "mid")

# ---- the source folders ----------------------------------------------------------------------------


def write_sources(size, root, weights=False, image_size=None):
    """Write the stand-ins of a SIZES entry under `root`; returns {"root", "bert", "opt"[, "eva"]}.

    `bert-base-uncased` (the name LAVIS's Blip2Base asks for, as a folder) and `opt`: config.json and
    tokenizer files. weights (toy sizes only): random BERT and OPT weights written with save_pretrained,
    and an EVA weights file for the size's ViT at `image_size` (default: the size's), each from a fixed seed.
    """
    from lavis.models.blip2_models.modeling_opt import OPTConfig, OPTForCausalLM
    from lavis.models.blip2_models.Qformer import BertConfig, BertLMHeadModel

    spec = SIZES[size]
    if weights and size not in TOY_SIZES:
        raise ValueError(f"write_sources: random weights are written for {TOY_SIZES} only, not {size!r}")
    sources = {
        "root": root,
        "bert": os.path.join(root, "bert-base-uncased"),
        "opt": os.path.join(root, "opt"),
    }
    shutil.copytree(os.path.join(TINY_ASSETS, "bert"), sources["bert"])
    update_json(os.path.join(sources["bert"], "config.json"), **spec["bert"])
    if spec["opt_tokenizer"] == "tiny":
        shutil.copytree(os.path.join(TINY_ASSETS, "opt"), sources["opt"])
    else:
        write_opt_tokenizer(sources["opt"])
        shutil.copy(os.path.join(TINY_ASSETS, "opt", "config.json"), sources["opt"])
    update_json(os.path.join(sources["opt"], "config.json"), **spec["opt"])
    if weights:
        with seeded(11):
            BertLMHeadModel(BertConfig.from_pretrained(sources["bert"])).save_pretrained(sources["bert"])
        with seeded(12):
            OPTForCausalLM(OPTConfig.from_pretrained(sources["opt"])).save_pretrained(sources["opt"])
        sources["eva"] = os.path.join(root, "eva_vit.pth")
        with seeded(13):
            vit = backbones.build_vision_encoder(
                spec["vit"], image_size or spec["image_size"], precision="fp32"
            )
        torch.save(vit.state_dict(), sources["eva"])
    return sources


def random_model_config(model_type, root, **overrides):
    """(blip2_opt_gated's model config of `model_type` at its real dimensions with every part random and every
    source a stand-in written under `root` (write_sources), those stand-ins); `overrides` merged last.
    The `tiny` type's sources are packaged, local and random already."""
    from lavis.common.registry import registry
    from omegaconf import OmegaConf

    cfg = registry.get_model_class("blip2_opt_gated").type_config(model_type)
    if model_type == "tiny":
        return OmegaConf.merge(cfg, overrides), write_sources("tiny", root)
    sources = write_sources(REAL_SIZE_OF_OPT[cfg.opt_model], root)
    local = {
        "qformer_bert": sources["bert"],
        "qformer_random_init": True,
        "opt_model": sources["opt"],
        "opt_random_init": True,
        "vit_weights": None,
        "pretrained": None,
        "load_finetuned": False,
        "style_encoder": {"checkpoint": None, "class_names": None, "allow_random": True},
    }
    return OmegaConf.merge(cfg, local, overrides), sources


# ---- LAVIS's own Blip2OPT, offline ------------------------------------------------------------------


def _has_weights(folder):
    from transformers.utils import SAFE_WEIGHTS_NAME, WEIGHTS_NAME

    return any(os.path.exists(os.path.join(folder, name)) for name in (WEIGHTS_NAME, SAFE_WEIGHTS_NAME))


@contextlib.contextmanager
def lavis_blip2_offline(sources, vit_arch):
    """LAVIS's Blip2OPT built from `sources` (write_sources): the one place LAVIS is patched.

    - blip2.py:32,48 read "bert-base-uncased": the working directory is sources["root"], where a folder of
      that name is (transformers prefers a local folder to the hub name);
    - blip2.py:54-56 BertLMHeadModel.from_pretrained and blip2_opt.py:78 OPTForCausalLM.from_pretrained load
      the folder's weights, or build random weights from its config.json when it has none;
    - blip2.py:72 -> eva_vit.py:429-431 create_eva_vit_g builds ViT-g and loads it from a fixed URL: here
      the `vit_arch` EVA, loaded from sources["eva"] when given, else random.
    """
    import lavis.models.blip2_models.blip2 as blip2
    import lavis.models.blip2_models.blip2_opt as blip2_opt
    from lavis.models.blip2_models.modeling_opt import OPTForCausalLM
    from lavis.models.blip2_models.Qformer import BertLMHeadModel

    def create_vit(img_size=224, drop_path_rate=0.4, use_checkpoint=False, precision="fp16"):
        return backbones.build_vision_encoder(
            vit_arch, img_size, drop_path_rate, use_checkpoint, precision, sources.get("eva")
        )

    def bert_from_pretrained(name, config):
        if _has_weights(name):
            return BertLMHeadModel.from_pretrained(name, config=config)
        return BertLMHeadModel(config)

    def opt_from_pretrained(name, torch_dtype):
        if _has_weights(name):
            return OPTForCausalLM.from_pretrained(name, torch_dtype=torch_dtype)
        return backbones.random_opt(name, torch_dtype, opt_class=OPTForCausalLM)

    cwd = os.getcwd()
    os.chdir(sources["root"])
    try:
        bert = mock.Mock(from_pretrained=bert_from_pretrained)
        opt = mock.Mock(from_pretrained=opt_from_pretrained)
        with (
            mock.patch.object(blip2, "create_eva_vit_g", create_vit),
            mock.patch.object(blip2, "BertLMHeadModel", bert),
            mock.patch.object(blip2_opt, "OPTForCausalLM", opt),
        ):
            yield
    finally:
        os.chdir(cwd)


def build_lavis_blip2opt(sources, vit_arch, seed=14, **kwargs):
    """LAVIS's Blip2OPT class itself from `sources`, random parts drawn from `seed`; kwargs: its
    constructor's (img_size, vit_precision, freeze_vit, num_query_token, prompt, max_txt_len, ...)."""
    from lavis.models.blip2_models.blip2_opt import Blip2OPT

    with lavis_blip2_offline(sources, vit_arch), seeded(seed):
        return Blip2OPT(opt_model=sources["opt"], **kwargs)

"""Builds BLIP-2's parts (EVA ViT, Q-Former, OPT and their tokenizers) from config values.

LAVIS hard-codes hub names and a weight URL inside Blip2Base (blip2.py:32,48,54-56,72) and
create_eva_vit_g (eva_vit.py:429-431). Here every source is a config value that may be a hub name,
a URL, or a local path, and every part can also be built with random weights from a local config,
which is what the offline `tiny` model type does. Architectures and defaults are LAVIS's own.
"""
import contextlib
import logging
import os
from functools import partial

import torch
import torch.nn as nn

PACKAGE_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

EVA_VIT_G_URL = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/eva_vit_g.pth"

# LAVIS eva_vit.py:create_eva_vit_g for eva_clip_g; eva_tiny is the same class at toy size.
VIT_ARCHITECTURES = {
    "eva_clip_g": dict(patch_size=14, embed_dim=1408, depth=39, num_heads=1408 // 88, mlp_ratio=4.3637),
    "eva_tiny": dict(patch_size=8, embed_dim=128, depth=2, num_heads=4, mlp_ratio=2.0),
}


def resolve_source(value):
    """A local path if `value` names one (as given, or relative to the package's configs folder);
    otherwise `value` unchanged (a hub name or URL)."""
    if value is None:
        return None
    value = str(value)
    if os.path.exists(value):
        return os.path.abspath(value)
    packaged = os.path.join(PACKAGE_CONFIG_DIR, value)
    if os.path.exists(packaged):
        return packaged
    return value


@contextlib.contextmanager
def seeded(seed):
    """Draw random initialisations from `seed`, leaving the global RNG as it was.

    Frozen parts built with random weights are not saved in checkpoints (LAVIS drops frozen parameters),
    so they must come out identical in every process that rebuilds the model.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def load_weights_file(url_or_path):
    """Tensors from a local file or a URL (downloaded through LAVIS's cache), never executing code."""
    from lavis.common.dist_utils import download_cached_file
    from lavis.common.utils import is_url

    source = resolve_source(url_or_path)
    if is_url(source):
        source = download_cached_file(source, check_hash=False, progress=True)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"weights file not found: {url_or_path!r} (give a URL or an existing local path)")
    return torch.load(source, map_location="cpu", weights_only=True)


def build_vision_encoder(arch, img_size, drop_path_rate=0.0, use_grad_checkpoint=False, precision="fp16", weights=None):
    """LAVIS's EVA VisionTransformer; `weights` (URL/path) None means random initialisation."""
    from lavis.models.eva_vit import VisionTransformer, convert_weights_to_fp16, interpolate_pos_embed

    if arch not in VIT_ARCHITECTURES:
        raise KeyError(f"model.vit_model {arch!r} is not one of {sorted(VIT_ARCHITECTURES)}")
    model = VisionTransformer(
        img_size=img_size,
        use_mean_pooling=False,
        qkv_bias=True,
        drop_path_rate=drop_path_rate,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_checkpoint=use_grad_checkpoint,
        **VIT_ARCHITECTURES[arch],
    )
    if weights:
        state_dict = load_weights_file(weights)
        interpolate_pos_embed(model, state_dict)
        incompatible = model.load_state_dict(state_dict, strict=False)
        logging.info("ViT weights from %s; missing keys: %s", weights, incompatible.missing_keys)
    if precision == "fp16":
        convert_weights_to_fp16(model)
    return model


def build_bert_tokenizer(source):
    """The Q-Former's BERT tokenizer with LAVIS's extra [DEC] bos token (blip2.py:32-34)."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(resolve_source(source))
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    return tokenizer


def build_qformer(source, num_query_token, vision_width, cross_attention_freq=2, random_init=False):
    """LAVIS's Q-Former (blip2.py:init_Qformer) from a BERT config/weights source."""
    from lavis.models.blip2_models.Qformer import BertConfig, BertLMHeadModel

    source = resolve_source(source)
    config = BertConfig.from_pretrained(source)
    config.encoder_width = vision_width
    config.add_cross_attention = True
    config.cross_attention_freq = cross_attention_freq
    config.query_length = num_query_token
    qformer = BertLMHeadModel(config) if random_init else BertLMHeadModel.from_pretrained(source, config=config)
    query_tokens = nn.Parameter(torch.zeros(1, num_query_token, config.hidden_size))
    query_tokens.data.normal_(mean=0.0, std=config.initializer_range)
    return qformer, query_tokens


def build_opt(source, precision="fp16", random_init=False):
    """(slow tokenizer, LAVIS OPTForCausalLM) from a hub name or local directory (blip2_opt.py:77-78)."""
    from lavis.models.blip2_models.modeling_opt import OPTConfig, OPTForCausalLM
    from transformers import AutoTokenizer

    source = resolve_source(source)
    dtype = torch.float16 if precision == "fp16" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(source, use_fast=False)
    if random_init:
        model = OPTForCausalLM(OPTConfig.from_pretrained(source)).to(dtype)
    else:
        model = OPTForCausalLM.from_pretrained(source, torch_dtype=dtype)
    return tokenizer, model

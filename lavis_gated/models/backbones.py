"""Builds BLIP-2's parts (EVA ViT, Q-Former, OPT and their tokenizers) from config values.

LAVIS hard-codes hub names and a weight URL inside Blip2Base (blip2.py:32,48,54-56,72) and
create_eva_vit_g (eva_vit.py:429-431). Here every source is a config value that may be a hub name,
a URL, or a local path, and every part can also be built with random weights from a local config,
which is what the offline `tiny` model type does. Architectures and defaults are LAVIS's own.
"""

import logging
from functools import partial

import torch
import torch.nn as nn

from lavis_gated.models.precision import dtype_of, norms_in_fp32
from lavis_gated.models.sources import (
    from_pretrained,
    load_weights_file,
    loading_source,
    resolve_source,
    seeded,
)

# LAVIS eva_vit.py:create_eva_vit_g for eva_clip_g; eva_tiny and eva_mid are the same class at smaller sizes.
VIT_ARCHITECTURES = {
    "eva_clip_g": dict(patch_size=14, embed_dim=1408, depth=39, num_heads=1408 // 88, mlp_ratio=4.3637),
    "eva_tiny": dict(patch_size=8, embed_dim=128, depth=2, num_heads=4, mlp_ratio=2.0),
    "eva_mid": dict(
        patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0
    ),  # ViT-S-sized, CPU benchmarks
}


def build_vision_encoder(
    arch, img_size, drop_path_rate=0.0, use_grad_checkpoint=False, precision="fp16", weights=None
):
    """LAVIS's EVA VisionTransformer; `weights` (URL/path) None means random initialisation."""
    from lavis.models.eva_vit import VisionTransformer, interpolate_pos_embed

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
    convert_matmul_weights(model, precision)
    return model


def convert_matmul_weights(model, precision):
    """Store Linear/Conv weights in `precision` (fp16 | bf16 | fp32), norms in fp32, as LAVIS stores its
    fp16 ViT (eva_vit.py:convert_weights_to_fp16); autocast then runs the part in that precision."""
    dtype = dtype_of(precision)
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            module.to(dtype)
    return model


def convert_opt(model, precision):
    """OPT stored in `precision` (fp16 | bf16 | fp32), its LayerNorms in fp32 (precision.py)."""
    return norms_in_fp32(model.to(dtype_of(precision)))


def build_bert_tokenizer(source):
    """The Q-Former's BERT tokenizer with LAVIS's extra [DEC] bos token (blip2.py:32-34)."""
    from transformers import BertTokenizer

    tokenizer = from_pretrained(BertTokenizer.from_pretrained, resolve_source(source))
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    return tokenizer


def build_qformer(source, num_query_token, vision_width, cross_attention_freq=2, random_init=False):
    """LAVIS's Q-Former (blip2.py:init_Qformer) from a BERT config/weights source."""
    from lavis.models.blip2_models.Qformer import BertConfig, BertLMHeadModel

    source = resolve_source(source)
    config = from_pretrained(BertConfig.from_pretrained, source)
    config.encoder_width = vision_width
    config.add_cross_attention = True
    config.cross_attention_freq = cross_attention_freq
    config.query_length = num_query_token
    qformer = (
        BertLMHeadModel(config)
        if random_init
        else from_pretrained(BertLMHeadModel.from_pretrained, source, config=config)
    )
    query_tokens = nn.Parameter(torch.zeros(1, num_query_token, config.hidden_size))
    query_tokens.data.normal_(mean=0.0, std=config.initializer_range)
    return qformer, query_tokens


def random_opt(source, dtype=torch.float32, opt_class=None):
    """An OPTForCausalLM (`opt_class`, default cached_opt's) with random weights from a config source, created
    in `dtype` directly (transformers' _from_config), so that an OPT kept in fp16/bf16 never exists in fp32
    (10.6 GB for OPT-2.7B)."""
    from lavis.models.blip2_models.modeling_opt import OPTConfig

    from lavis_gated.models.cached_opt import OPTForCausalLM

    config = from_pretrained(OPTConfig.from_pretrained, resolve_source(source))
    return (opt_class or OPTForCausalLM)._from_config(config, torch_dtype=dtype)


def build_opt(source, precision="fp16", random_init=False):
    """(slow tokenizer, LAVIS OPTForCausalLM with a working generation cache: cached_opt.py) from a hub name
    or local directory (blip2_opt.py:77-78), stored in `precision`, LayerNorms in fp32 (precision.py)."""
    from transformers import AutoTokenizer

    from lavis_gated.models.cached_opt import OPTForCausalLM

    source = resolve_source(source)
    dtype = dtype_of(precision)
    tokenizer = from_pretrained(AutoTokenizer.from_pretrained, source, use_fast=False)
    if random_init:
        model = random_opt(source, dtype)
    else:
        model = from_pretrained(OPTForCausalLM.from_pretrained, source, torch_dtype=dtype)
    return tokenizer, norms_in_fp32(model)


def freeze(module):
    for p in module.parameters():
        p.requires_grad = False


def build_blip2_parts(config):
    """LAVIS Blip2OPT's parts from a ModelConfig, under its attribute names (so BLIP-2 checkpoints load):
    {tokenizer, visual_encoder, ln_vision, Qformer, query_tokens, opt_tokenizer, opt_model, opt_proj}.

    As Blip2OPT.__init__ (blip2_opt.py:55-94) builds them, minus its fixed hub names and URL: every source
    is a config value, and each randomly initialised part draws from its own seed (random_init_seed + k),
    so that it comes out identical in every process that rebuilds it. The ViT and OPT are stored in
    config.vit_precision / opt_precision: fp16 | bf16 | fp32 (auto is chosen before: the model's __init__).
    """
    from lavis.models.blip2_models.blip2 import LayerNorm, disabled_train

    seed = config.random_init_seed
    parts = {}
    with loading_source("model.qformer_bert", config.qformer_bert):
        parts["tokenizer"] = build_bert_tokenizer(config.qformer_bert)
    with seeded(seed), loading_source("model.vit_weights", config.vit_weights):
        vit = build_vision_encoder(
            config.vit_model,
            config.image_size,
            config.drop_path_rate,
            config.use_grad_checkpoint,
            config.vit_precision,
            config.vit_weights,
        )
    if config.freeze_vit:
        freeze(vit)
        vit = vit.eval()
        vit.train = disabled_train
    parts["visual_encoder"], parts["ln_vision"] = vit, LayerNorm(vit.num_features)

    with seeded(seed + 3), loading_source("model.qformer_bert", config.qformer_bert):
        qformer, query_tokens = build_qformer(
            config.qformer_bert,
            config.num_query_token,
            vit.num_features,
            config.cross_attention_freq,
            config.qformer_random_init,
        )
    # the text branch BLIP-2's OPT variant does without (blip2_opt.py:69-74)
    qformer.cls = None
    qformer.bert.embeddings.word_embeddings = None
    qformer.bert.embeddings.position_embeddings = None
    for layer in qformer.bert.encoder.layer:
        layer.output = None
        layer.intermediate = None
    if config.freeze_qformer:
        freeze(qformer)
        query_tokens.requires_grad = False
    parts["Qformer"], parts["query_tokens"] = qformer, query_tokens

    with seeded(seed + 1), loading_source("model.opt_model", config.opt_model):
        parts["opt_tokenizer"], parts["opt_model"] = build_opt(
            config.opt_model, config.opt_precision, config.opt_random_init
        )
    freeze(parts["opt_model"])
    parts["opt_proj"] = nn.Linear(qformer.config.hidden_size, parts["opt_model"].config.hidden_size)
    return parts

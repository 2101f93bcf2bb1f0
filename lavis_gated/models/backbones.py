"""Builds BLIP-2's parts (EVA ViT, Q-Former, OPT and their tokenizers) from config values.

LAVIS hard-codes hub names and a weight URL inside Blip2Base (blip2.py:32,48,54-56,72) and
create_eva_vit_g (eva_vit.py:429-431). Here every source is a config value that may be a hub name,
a URL, or a local path, and every part can also be built with random weights from a local config,
which is what the offline `tiny` model type does. Architectures and defaults are LAVIS's own.
"""
import contextlib
import logging
import os
import socket
from functools import partial
from urllib.parse import urlparse

import torch
import torch.nn as nn

from lavis_gated.checkpoint_io import load_checkpoint, local_checkpoint_path
from lavis_gated.models.precision import PRECISIONS, check_precision, norms_in_fp32

PACKAGE_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

EVA_VIT_G_URL = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/eva_vit_g.pth"

# LAVIS eva_vit.py:create_eva_vit_g for eva_clip_g; eva_tiny and eva_mid are the same class at smaller sizes.
VIT_ARCHITECTURES = {
    "eva_clip_g": dict(patch_size=14, embed_dim=1408, depth=39, num_heads=1408 // 88, mlp_ratio=4.3637),
    "eva_tiny": dict(patch_size=8, embed_dim=128, depth=2, num_heads=4, mlp_ratio=2.0),
    "eva_mid": dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0),  # ViT-S-sized, CPU benchmarks
}


class SourceUnavailableError(OSError):
    """A weights/config source (hub name, URL or path) could not be loaded."""


@contextlib.contextmanager
def loading_source(key, value):
    """Re-raise a failure to load config value `key` (= `value`) as an error that says how to fix it.

    Without network, hub names and URLs fail deep inside transformers or torch.hub; the user needs to
    know which config value it was and how to point it at local files instead.
    """
    try:
        yield
    except SourceUnavailableError:
        raise
    except OSError as error:
        value = str(value)
        if value.startswith(("http://", "https://")):
            cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(value).path))
            fix = (f"download it where there is network and set {key} to the local file's path, "
                   f"or place it at {cached} (LAVIS's download cache)")
        elif os.path.isabs(value) or value.startswith("."):
            fix = f"{value} must be an existing local path"
        else:
            fix = (f"set {key} to a local directory holding a copy of that Hugging Face repository "
                   "(save_pretrained or a snapshot), or fill the Hugging Face cache and set HF_HUB_OFFLINE=1")
        raise SourceUnavailableError(f"{key}: could not load {value!r} ({type(error).__name__}: {error}). "
                                     f"It is not a local path, and fetching it failed; {fix}.") from error


def from_pretrained(load, source, **kwargs):
    """`load(source, **kwargs)` for a transformers from_pretrained: a local folder as it is; a hub name
    from the local Hugging Face cache if it is there, else fetched, but only once the hub is known to
    answer (unreachable, huggingface_hub retries every file for about 25 s before failing)."""
    if os.path.isdir(source):
        return load(source, **kwargs)
    try:
        return load(source, local_files_only=True, **kwargs)
    except OSError:
        pass
    _require_hub()
    return load(source, **kwargs)


def _require_hub(timeout=5.0):
    """Raise OSError at once if the Hugging Face hub cannot be reached (no probe behind a proxy)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or os.environ.get("TRANSFORMERS_OFFLINE", "0") not in ("0", ""):
        raise OSError("offline mode is set (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE) and it is not in the cache")
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError as error:
        raise OSError(f"{endpoint.hostname} is unreachable ({error})") from error


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
    source = local_checkpoint_path(resolve_source(url_or_path))
    if not os.path.isfile(source):
        raise SourceUnavailableError(f"weights file not found: {url_or_path!r} (give a URL or an existing local path)")
    return load_checkpoint(source)


def build_vision_encoder(arch, img_size, drop_path_rate=0.0, use_grad_checkpoint=False, precision="fp16", weights=None):
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
    dtype = PRECISIONS[check_precision(precision)]
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            module.to(dtype)


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
    qformer = BertLMHeadModel(config) if random_init else from_pretrained(BertLMHeadModel.from_pretrained, source, config=config)
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
    dtype = PRECISIONS[check_precision(precision)]
    tokenizer = from_pretrained(AutoTokenizer.from_pretrained, source, use_fast=False)
    if random_init:
        model = random_opt(source, dtype)
    else:
        model = from_pretrained(OPTForCausalLM.from_pretrained, source, torch_dtype=dtype)
    return tokenizer, norms_in_fp32(model)

"""Builds BLIP-2's parts (EVA ViT, Q-Former, OPT and their tokenizers) from config values.

LAVIS hard-codes hub names and a weight URL inside Blip2Base (blip2.py:32,48,54-56,72) and
create_eva_vit_g (eva_vit.py:429-431). Here every source is a config value that may be a hub name,
a URL, or a local path, and every part can also be built with random weights from a local config,
which is what the offline `tiny` model type does. Architectures and defaults are LAVIS's own.

Where each part's weights and configs come from: a config value that may be a hub name, a URL or a local
path, turned into files or a clear error naming the config key and the fix.

LAVIS hard-codes hub names and a weight URL inside Blip2Base (blip2.py:32,48,54-56,72) and create_eva_vit_g
(eva_vit.py:429-431); without network they fail deep inside transformers or torch.hub after long retries.

LAVIS's OPTForCausalLM with its key/value cache reaching the model during generation.

LAVIS 1.0.2's prepare_inputs_for_generation (modeling_opt.py:1079-1102) takes the cache as `past`, the
name older transformers passed; transformers 4.26 passes `past_key_values` (generation/utils.py:707), which
lands in **kwargs unused. Every generated token then recomputes the whole sequence (query prefix, prompt and
the tokens so far) for every beam: at real size on CPU, 30 tokens with 5 beams took 199 s. Here the cache is
passed under the name LAVIS reads; weights, state-dict keys and outputs are LAVIS's.

torch.compile of the trainable path (model.compile_mode), and the one LAVIS/transformers probe it must
answer first.

Small-batch BLIP-2 steps on a GPU are bound by kernel launches and Python overhead, not arithmetic; compiled
(fused kernels; with mode="reduce-overhead", CUDA graphs) they launch far fewer kernels.
"""

import contextlib
import logging
import os
import socket
from functools import partial
from typing import NamedTuple
from urllib.parse import urlparse

import torch
import torch.nn as nn
from lavis.models.blip2_models.modeling_opt import OPTForCausalLM as LavisOPTForCausalLM

from lavis_gated.common.checkpoints import load_checkpoint, local_checkpoint_path
from lavis_gated.models.precision import PRECISIONS, check_precision, norms_in_fp32

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
    qformer = (
        BertLMHeadModel(config)
        if random_init
        else from_pretrained(BertLMHeadModel.from_pretrained, source, config=config)
    )
    query_tokens = nn.Parameter(torch.zeros(1, num_query_token, config.hidden_size))
    query_tokens.data.normal_(mean=0.0, std=config.initializer_range)
    return qformer, query_tokens


def random_opt(source, dtype=torch.float32, opt_class=None):
    """An OPTForCausalLM (`opt_class`, default the cached OPTForCausalLM below) with random weights from a
    config source, created in `dtype` directly (transformers' _from_config), so that an OPT kept in fp16/bf16
    never exists in fp32 (10.6 GB for OPT-2.7B)."""
    from lavis.models.blip2_models.modeling_opt import OPTConfig

    config = from_pretrained(OPTConfig.from_pretrained, resolve_source(source))
    return (opt_class or OPTForCausalLM)._from_config(config, torch_dtype=dtype)


def build_opt(source, precision="fp16", random_init=False):
    """(slow tokenizer, LAVIS OPTForCausalLM with a working generation cache: OPTForCausalLM below) from a
    hub name or local directory (blip2_opt.py:77-78), stored in `precision`, LayerNorms in fp32
    (precision.py)."""
    from transformers import AutoTokenizer

    source = resolve_source(source)
    dtype = PRECISIONS[check_precision(precision)]
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
    Blip2Parts(tokenizer, visual_encoder, ln_vision, Qformer, query_tokens, opt_tokenizer, opt_model,
    opt_proj).

    As Blip2OPT.__init__ (blip2_opt.py:55-94) builds them, minus its fixed hub names and URL: every source
    is a config value, and each randomly initialised part draws from its own seed (random_init_seed + k),
    so that it comes out identical in every process that rebuilds it.
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
    return Blip2Parts(**parts)


class Blip2Parts(NamedTuple):
    """Blip2OPT's parts, in its attribute (and state-dict key) order."""

    tokenizer: object
    visual_encoder: nn.Module
    ln_vision: nn.Module
    Qformer: nn.Module
    query_tokens: nn.Parameter
    opt_tokenizer: object
    opt_model: nn.Module
    opt_proj: nn.Module


PACKAGE_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


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
            fix = (
                f"download it where there is network and set {key} to the local file's path, "
                f"or place it at {cached} (LAVIS's download cache)"
            )
        elif os.path.isabs(value) or value.startswith("."):
            fix = f"{value} must be an existing local path"
        else:
            fix = (
                f"set {key} to a local directory holding a copy of that Hugging Face repository "
                "(save_pretrained or a snapshot), or fill the Hugging Face cache and set HF_HUB_OFFLINE=1"
            )
        raise SourceUnavailableError(
            f"{key}: could not load {value!r} ({type(error).__name__}: {error}). "
            f"It is not a local path, and fetching it failed; {fix}."
        ) from error


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
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ) not in ("0", ""):
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
        raise SourceUnavailableError(
            f"weights file not found: {url_or_path!r} (give a URL or an existing local path)"
        )
    return load_checkpoint(source)


class OPTForCausalLM(LavisOPTForCausalLM):
    def prepare_inputs_for_generation(
        self,
        input_ids=None,
        query_embeds=None,
        past=None,
        attention_mask=None,
        use_cache=None,
        past_key_values=None,
        **kwargs,
    ):
        """After the first step: only the last token, no query prefix, and the cache (LAVIS's method)."""
        return super().prepare_inputs_for_generation(
            input_ids, query_embeds, past or past_key_values, attention_mask, use_cache, **kwargs
        )


def answer_tpu_probe_once():
    """Let torch.compile trace the Q-Former in one graph.

    Its forward reads `self.dtype` (Qformer.py:799), and transformers 4.26's get_parameter_dtype then calls
    is_torch_tpu_available(), whose importlib.util.find_spec is untraceable: with torch 2.11 every call was a
    graph break. The answer cannot change within a process, so modeling_utils gets a function returning it.
    """
    import transformers.modeling_utils as modeling_utils

    probe = modeling_utils.is_torch_tpu_available
    if getattr(probe, "answered_once", False):
        return
    answer = probe()

    def is_torch_tpu_available(check_device=True):
        return answer

    is_torch_tpu_available.answered_once = True
    modeling_utils.is_torch_tpu_available = is_torch_tpu_available


def compile_trainable_path(model, **options):
    """torch.compile(**options) the Q-Former and each OPT decoder layer of `model`, in place (state-dict keys
    unchanged); returns the multiple that training texts are padded to.

    OPT is compiled layer by layer because LAVIS's decoder loop draws a Python random number for LayerDrop
    (modeling_opt.py:741-742), a data-dependent branch that would split one whole-model graph anyway; the
    layers share one compiled graph. Training texts are padded to a multiple of 8 tokens, so that only a few
    shapes are compiled (the padding is masked: losses do not change).
    """
    answer_tpu_probe_once()
    model.Qformer.bert.compile(**options)
    for layer in model.opt_model.model.decoder.layers:
        layer.compile(**options)
    return 8

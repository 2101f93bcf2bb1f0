"""How blip2_opt_gated reads checkpoints: BLIP-2's (LAVIS Blip2OPT state dicts, stage-1 checkpoints, LAVIS's
trainable-only runner checkpoints) and its own, whose config and style vocabulary travel with them.

Keys are checked by checkpoint_keys' one rule: a key the model does not know, or a tensor of the wrong shape,
is an error naming the file; missing keys are allowed and logged per module (the new modules in a BLIP-2
checkpoint, the frozen parts LAVIS's checkpoints leave out). The parts of a BLIP-2 stage-1 checkpoint that
Blip2OPT itself drops (Q-Former text branch, ITC/ITM heads) are counted and ignored.
"""

import io
import logging
import os
import re

from omegaconf import OmegaConf

from lavis_gated.common.checkpoints import check_state_dict, count_by_module, load_checkpoint
from lavis_gated.models.backbones import load_weights_file, loading_source
from lavis_gated.models.style_parts import adopt_style_vocabulary

STYLE_VOCAB_KEY = "style_vocabulary._extra_state"
NEW_MODULES = (
    "style_vocabulary",
    "style_encoder",
    "style_head",
    "style_to_qformer",
    "prompt_mapper",
    "kv_modulation",
)
# keys of BLIP-2 checkpoints (stage 1) for parts that Blip2OPT sets to None or never builds
# (blip2_opt.py:69-74)
UNUSED_BLIP2_KEYS = re.compile(
    r"^(Qformer\.cls\.|Qformer\.bert\.embeddings\.(word|position)_embeddings\."
    r"|Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\.|(vision_proj|text_proj|itm_head)\.|temp$)"
)
OTHER_SETTINGS_HINT = (
    " (a checkpoint trained with other model settings: build the model from it with "
    "Blip2OPTGated.from_checkpoint(path) or load_model_and_preprocess('blip2_opt_gated', "
    "model_type=path))"
)


def style_names_in_checkpoint(checkpoint):
    """Style names stored in a lavis-gated checkpoint dict, or None."""
    state = checkpoint.get("model", checkpoint)
    if STYLE_VOCAB_KEY in state:
        return list(state[STYLE_VOCAB_KEY]["names"])
    names = (checkpoint.get("config") or {}).get("model", {}).get("style_names")
    return list(names) if names else None


def read_checkpoint(url_or_path, key):
    """A checkpoint dict from a URL or local file (config key `key` names it), never executing pickled
    code."""
    with loading_source(key, url_or_path):
        return load_weights_file(url_or_path)


def load_trained_state(model, checkpoint, source="checkpoint"):
    """Load a LAVIS/BLIP-2 or lavis-gated checkpoint dict (plain, or under "model") into `model`; returns
    torch's (missing_keys, unexpected_keys). A lavis-gated checkpoint's style vocabulary replaces the
    model's."""
    state_dict = checkpoint.get("model", checkpoint)
    unused = [k for k in state_dict if UNUSED_BLIP2_KEYS.match(k)]
    if unused:
        state_dict = {k: v for k, v in state_dict.items() if not UNUSED_BLIP2_KEYS.match(k)}
        logging.info(
            "%s: %d keys of BLIP-2 parts that blip2_opt does not use are ignored (%s ...)",
            source,
            len(unused),
            unused[:3],
        )
    names = style_names_in_checkpoint(checkpoint)
    if names and names != model.vocabulary.names:
        adopt_style_vocabulary(model, names)
    check_state_dict(
        state_dict,
        model.state_dict(),
        source,
        "blip2_opt_gated",
        may_miss=lambda key: True,
        hint=OTHER_SETTINGS_HINT,
    )
    incompatible = model.load_state_dict(state_dict, strict=False)
    missing = incompatible.missing_keys
    new = [k for k in missing if k.split(".")[0] in NEW_MODULES]
    # remove_duplicate=False also names tied aliases (OPT's lm_head.weight is embed_tokens.weight).
    frozen = {n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
    missing_frozen = [k for k in missing if k not in new and k in frozen]
    missing_trainable = [k for k in missing if k not in new and k not in frozen]
    logging.info(
        "loaded %s: %d keys; new modules not in it: %s; frozen keys not in it: %d (%s); "
        "other trainable keys not in it: %s",
        source,
        len(state_dict),
        count_by_module(new),
        len(missing_frozen),
        count_by_module(missing_frozen),
        missing_trainable,
    )
    return incompatible


def is_checkpoint_path(model_type):
    return isinstance(model_type, str) and model_type.endswith((".pth", ".pt")) and os.path.isfile(model_type)


def checkpoint_config(path, type_config_path):
    """A model-type YAML (as text, for OmegaConf.load) that rebuilds the model a lavis-gated checkpoint was
    trained as: its model type's YAML, then the model block saved in the checkpoint, then load_finetuned from
    this file; preprocessing from the run's eval processors. type_config_path(model_type) -> that type's
    YAML."""
    saved = load_checkpoint(path, mmap=True).get("config") or {}
    if not saved.get("model"):
        raise ValueError(
            f"{path} holds no run config (not written by lavis-gated's runner): build a model type "
            "and load it with model.load_checkpoint(path)"
        )
    base = OmegaConf.load(type_config_path(saved["model"].get("model_type", "pretrain_opt2.7b")))
    model = OmegaConf.merge(
        base.model, saved["model"], {"load_finetuned": True, "finetuned": os.path.abspath(path)}
    )
    preprocess = base.get("preprocess") or {}
    for dataset in (saved.get("datasets") or {}).values():
        processors = {k: dataset[k] for k in ("vis_processor", "text_processor") if k in dataset}
        preprocess = OmegaConf.merge(preprocess, processors)
        break
    return io.StringIO(OmegaConf.to_yaml(OmegaConf.create({"model": model, "preprocess": preprocess})))

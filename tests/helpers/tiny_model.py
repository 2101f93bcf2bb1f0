"""The tiny blip2_opt_gated model and a small batch for it, as model tests build them."""

import torch
from lavis.common.registry import registry
from omegaconf import OmegaConf

import lavis_gated  # noqa: F401  (registration)

STYLES = ["cubism", "impressionism", "pop art"]


def build_tiny(**overrides):
    """The tiny model from its packaged YAML with dotted-key overrides (e.g. gating={"type": "gate"})."""
    model_cls = registry.get_model_class("blip2_opt_gated")
    cfg = OmegaConf.load(model_cls.default_config_path("tiny")).model
    cfg = OmegaConf.merge(cfg, {"style_names": STYLES, "image_size": 32, **overrides})  # 32 px: faster
    torch.manual_seed(0)
    return model_cls.from_config(cfg)


def batch(size=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(size, 3, 32, 32, generator=g),
        "text_input": [
            "what style is this painting",
            "which shape is in the middle",
            "what style",
            "what shape",
        ][:size],
        "answer": ["pop art", "circle", "cubism", "square"][:size],
        "style": ["pop art", "cubism", "pop_art", "unknown"][:size],
        "question_type": ["style", "shape", "style", "shape"][:size],
        "question_id": [f"batch{seed}-{i}" for i in range(size)],  # as dataset rows carry: the probe's draw
    }

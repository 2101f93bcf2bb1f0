"""The two models benchmarks/step_time.py compares, at one size: LAVIS's own Blip2OPT (the baseline) and
blip2_opt_gated with the baseline's weights loaded (both compute the same BLIP-2), their batches and the gated
model's loss (the style_captioning task's, with the demo's weights: the style probe on its default share of
the labelled rows). Random weights, nothing downloaded: the
sources are lavis_gated.offline.standins', the stand-ins the tests use too.
"""

import copy

import torch
from lavis.common.registry import registry
from omegaconf import OmegaConf
from step_timing import Trainer

from lavis_gated.models.precision import compute_precision
from lavis_gated.offline.standins import SIZES, build_lavis_blip2opt, write_sources
from lavis_gated.tasks.style_captioning import StyleCaptioningTask

AMP = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}
PROMPT = "Question: {} Answer:"
# ArtQuest's question types and answer forms; every row has a style label, so the style probe may score any
QUESTIONS = [
    ("who painted this?", "Giotto di Bondone", "artist"),
    ("what is the title of this painting?", "The Visitation", "title"),
    ("what school does this painting belong to?", "Italian", "school"),
    ("when was this painting made?", "1301-1350", "timeframe"),
]
STYLE = "impressionism"


def precision_for(device):
    """Frozen ViT/OPT precision of both models: LAVIS's fp16 as it computes on `device`
    (lavis_gated.models.precision): fp16 on CUDA, fp32 on CPU (as load_model_and_preprocess). LAVIS's
    Blip2OPT, the baseline, knows no bf16, so the CPU's auto choice is not theirs to make."""
    return compute_precision("fp16", device.type)


def build_baseline(size, sources, image_size, device):
    """LAVIS's Blip2OPT at `size`, random weights, on `device`."""
    spec = SIZES[size]
    with torch.device(device):
        model = build_lavis_blip2opt(
            sources,
            spec["vit"],
            seed=0,
            img_size=image_size,
            vit_precision=precision_for(device),
            num_query_token=spec["num_query_token"],
            prompt="",
            max_txt_len=32,
        )
    return model.float() if device.type == "cpu" else model


def gated_config(size, sources, image_size, device, overrides=()):
    """blip2_opt_gated's model config for `size`: the model type's YAML, every part random and local."""
    spec = SIZES[size]
    model_cls = registry.get_model_class("blip2_opt_gated")
    cfg = OmegaConf.load(model_cls.default_config_path(spec["model_type"])).model
    cfg = OmegaConf.merge(
        cfg,
        {
            "vit_model": spec["vit"],
            "vit_weights": None,
            "image_size": image_size,
            "pretrained": None,
            "vit_precision": precision_for(device),
            "opt_precision": precision_for(device),
            "num_query_token": spec["num_query_token"],
            "qformer_bert": sources["bert"],
            "qformer_random_init": True,
            "opt_model": sources["opt"],
            "opt_random_init": True,
            "prompt": PROMPT,
            "style_encoder": {
                **spec["style_encoder"],
                "checkpoint": None,
                "class_names": None,
                "allow_random": True,
            },
        },
    )
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))


def build_gated(size, sources, image_size, device, overrides=()):
    with torch.device(device):
        model = registry.get_model_class("blip2_opt_gated").from_config(
            gated_config(size, sources, image_size, device, overrides)
        )
    return model.to(device)


def build_task(overrides=()):
    """The demo's loss: LM + 0.1 naming + 0.1 KL (both from the style probe, on run.style_probe_share of the
    labelled rows) + 1.0 style-head CE; overrides: task settings as key=value (style_probe_share=1.0: the
    probe on every labelled row; style_name_weight=0 style_kl_weight=0: no probe at all)."""
    settings = dict(
        lm_weight=1.0,
        style_name_weight=0.1,
        style_kl_weight=0.1,
        style_ce_weight=1.0,
    )
    settings.update(OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides))))
    return StyleCaptioningTask(**settings)


def make_samples(batch_size, image_size, device):
    """(baseline samples, gated samples) over the same images and texts."""
    image = torch.randn(batch_size, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)).to(
        device
    )
    rows = [QUESTIONS[i % len(QUESTIONS)] for i in range(batch_size)]
    baseline = {"image": image, "text_input": [f"{PROMPT.format(q)} {a}" for q, a, _ in rows]}
    gated = {
        "image": image,
        "text_input": [q for q, _, _ in rows],
        "answer": [a for _, a, _ in rows],
        "question_type": [t for _, _, t in rows],
        "style": [STYLE] * batch_size,
    }
    return baseline, gated


def fast_trainer(gated, gated_samples, task, device, amp_dtype, compile_mode=None, copy_model=True):
    """The gated model (a copy) fed precomputed frozen features (the frozen-feature cache's batches),
    optionally with its trainable path compiled (model.compile_mode)."""
    model = copy.deepcopy(gated) if copy_model else gated
    with (
        torch.no_grad(),
        torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None),
    ):
        features = model.frozen_features(gated_samples["image"])
    samples = {k: v for k, v in gated_samples.items() if k != "image"}
    samples.update(features)
    name = "blip2_opt_gated_fast"
    if compile_mode:
        model.compile_trainable_path(mode=compile_mode)
        name += f"_compiled_{compile_mode}"
    return Trainer(name, model, lambda m, s: task.train_step(m, s), samples, device, amp_dtype)


def build_trainers(args, root, device):
    sources = write_sources(args.size, root)
    baseline_samples, gated_samples = make_samples(args.batch_size, args.image_size, device)
    amp_dtype = AMP[args.amp]
    task = build_task(args.task_options)
    baseline = build_baseline(args.size, sources, args.image_size, device)
    gated = build_gated(args.size, sources, args.image_size, device, args.gated_options)
    gated.load_trained_state(baseline.state_dict(), "LAVIS Blip2OPT")
    trainers = [
        Trainer("blip2_opt", baseline, lambda m, s: m(s)["loss"], baseline_samples, device, amp_dtype),
        Trainer(
            "blip2_opt_gated", gated, lambda m, s: task.train_step(m, s), gated_samples, device, amp_dtype
        ),
    ]
    if args.fast:
        trainers += [
            fast_trainer(gated, gated_samples, task, device, amp_dtype, mode)
            for mode in [None, *args.compile]
        ]
    return trainers

"""The `model:` block of blip2_opt_gated, one dataclass per part; each field is that key's one default.

The defaults are the real model's (LAVIS's Blip2OPT with OPT-2.7B, plus an EfficientNet-B3 style encoder);
the model-type YAMLs under configs/models/blip2_opt_gated/ set what differs for their type.
"""

from dataclasses import dataclass
from typing import Optional

from lavis_gated.configs.schema import block, from_block, setting

# The frozen ViT's and OPT's precisions, each with the torch dtype (by name: configs import no torch) that
# stores the part; `auto` is chosen per device when the model is built and used (models/precision.py).
STORED_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}
PRECISIONS = (*STORED_DTYPES, "auto")
PRECISION_HELP = (
    "storage precision of the frozen {part}: on CUDA it computes in it (auto: LAVIS's fp16); on CPU fp16 "
    "runs in fp32, bf16 in bf16 (warns where the CPU lacks native bf16: many times slower), auto in bf16 "
    "where the CPU computes it natively (AVX512-BF16, AMX) and fp32 otherwise"
)
# KVModulation's kinds (film, gate), ControlAttention's (adapter, style_query, style_prefix); "none" builds no
# modulation part
GATING_TYPES = ("film", "gate", "adapter", "style_query", "style_prefix", "none")
EVA_VIT_G_URL = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/eva_vit_g.pth"


@dataclass
class StyleEncoderConfig:
    arch: str = setting("efficientnet_b3", "timm architecture of the frozen style CNN")
    image_size: Optional[int] = setting(
        None,
        "its input size (the batch is resized to it); null: the size its trainer recorded in metrics.json "
        "beside `checkpoint`, else the weights' timm config's input_size (288 for EfficientNet-B3)",
    )
    interpolation: Optional[str] = setting(
        None,
        "resize filter; null: the one recorded beside `checkpoint`, else the weights' timm config's "
        "(bicubic for EfficientNet-B3)",
        choices=(None, "bilinear", "bicubic", "nearest"),
    )
    checkpoint: Optional[str] = setting(None, "its WikiArt-trained weights: a timm state dict file or URL")
    class_names: Optional[str] = setting(
        None,
        "JSON list naming the checkpoint classifier's rows: matching styles "
        "start the style head from those rows",
    )
    allow_random: bool = setting(False, "accept a random CNN when `checkpoint` is null (warns)")


@dataclass
class PromptMapperConfig:
    num_tokens: int = setting(4, "control tokens made from the style feature and the prompt")
    hidden_size: int = setting(256, "their width")
    num_heads: int = setting(4, "attention heads of the mapper")
    dropout: float = setting(0.1, "dropout inside the mapper")


@dataclass
class GatingConfig:
    type: str = setting(
        "film",
        "film: K*(1+gamma_k), V*(1+gamma_v)+beta_v (a shift of K would cancel in softmax); "
        "gate: K*(1+tanh g_k), V*(1+tanh g_v) (a per-head softmax temperature and value scale, no additive "
        "term); adapter: the control tokens as extra keys/values of each modulated cross-attention layer, "
        "own softmax, added through a zero-init tanh gate per head; style_query: the same in every Q-Former "
        "self-attention layer (tokens beside the 32 queries); style_prefix: the same in every OPT "
        "self-attention layer (prefix tokens at OPT's width, no K/V modulation); none: the plain BLIP-2 "
        "Q-Former. Every kind starts exactly at BLIP-2",
        choices=GATING_TYPES,
    )
    per_head: bool = setting(True, "one parameter per head (else one per channel)")
    hidden_dim: int = setting(256, "width of the MLP that maps control tokens to the parameters")
    init_scale: float = setting(0.0, "std of that MLP's last layer at init; 0 starts exactly at BLIP-2")


@dataclass
class CrossAttentionLoraConfig:
    enabled: bool = setting(False, "peft LoRA on the Q-Former's cross-attention key/value projections")
    rank: int = setting(8, "LoRA rank")
    alpha: int = setting(16, "LoRA alpha")
    dropout: float = setting(0.05, "LoRA dropout")


@dataclass
class StyleProbeConfig:
    prompt: str = setting(
        "Question: What style is this painting? Answer:",
        "the fixed style question the probe asks of every labelled image, whatever its row asks; each "
        "style's name is scored as its answer",
    )


@dataclass
class ModelConfig:
    arch: str = setting("blip2_opt_gated", "registered model name (LAVIS)")
    model_type: str = setting("pretrain_opt2.7b", "model type whose YAML the block starts from (LAVIS)")
    load_finetuned: bool = setting(False, "load `finetuned` after `pretrained` (LAVIS)")
    pretrained: Optional[str] = setting(None, "BLIP-2 (or lavis-gated) checkpoint URL or path (LAVIS)")
    finetuned: Optional[str] = setting(
        None, "finetuned checkpoint URL or path; its style vocabulary and model settings win (LAVIS)"
    )
    vit_model: str = setting(
        "eva_clip_g",
        "eva_clip_g (LAVIS's ViT-g), eva_mid (ViT-S-sized) or eva_tiny",
        choices=("eva_clip_g", "eva_mid", "eva_tiny"),
    )
    vit_weights: Optional[str] = setting(
        EVA_VIT_G_URL, "URL or path of the ViT weights; null = random (seeded)"
    )
    image_size: int = setting(224, "input size of the ViT (as LAVIS)")
    drop_path_rate: float = setting(0.0, "ViT drop path (as LAVIS)")
    use_grad_checkpoint: bool = setting(False, "ViT gradient checkpointing (as LAVIS)")
    vit_precision: str = setting("fp16", PRECISION_HELP.format(part="ViT"), choices=PRECISIONS)
    freeze_vit: bool = setting(True, "keep the ViT frozen (as LAVIS)")
    num_query_token: int = setting(32, "Q-Former queries (as LAVIS)")
    cross_attention_freq: int = setting(
        2, "a cross-attention layer every this many Q-Former layers (as LAVIS)"
    )
    qformer_bert: str = setting(
        "bert-base-uncased",
        "hub name or folder of the Q-Former's BERT config (+ vocab, + weights unless qformer_random_init)",
    )
    qformer_random_init: bool = setting(False, "random Q-Former instead of BERT's weights")
    freeze_qformer: bool = setting(False, "freeze the Q-Former (e.g. to train only LoRA and the modulation)")
    opt_model: str = setting(
        "facebook/opt-2.7b",
        "hub name or folder of OPT (slow-tokenizer files + weights, or config only when random)",
    )
    opt_random_init: bool = setting(False, "random OPT from the folder's config")
    opt_precision: str = setting("fp16", PRECISION_HELP.format(part="OPT"), choices=PRECISIONS)
    random_init_seed: int = setting(
        0,
        "seed of every randomly initialised part (frozen random parts are not in "
        "checkpoints, so they must be rebuilt identically)",
    )
    prompt: str = setting(
        "Question: {} Answer:",
        "template of a question row's prompt; {} is the question (required: a template without it is "
        "refused, since every question would become the same prompt)",
    )
    caption_prompt: str = setting(
        "",
        "prompt of a caption row (no question), e.g. LAVIS's captioning types' 'a photo of'; masked from "
        "the loss",
    )
    max_txt_len: int = setting(32, "token budget for a question row's prompt + answer (answer: half of it)")
    max_caption_len: int = setting(
        40,
        "token budget of a caption target, the caption prompt counted apart; a caption cut by it gets no end "
        "token",
    )
    style_names: list[str] = setting(
        [],
        "style vocabulary; replaced by the train split's styles when training, by "
        "the checkpoint's when loading one",
    )
    compile_mode: Optional[str] = setting(
        None,
        "torch.compile mode of the Q-Former and each OPT layer; null = eager",
        choices=(None, "default", "reduce-overhead", "max-autotune"),
    )
    style_encoder: StyleEncoderConfig = block(StyleEncoderConfig, "the frozen style CNN")
    style_probe: StyleProbeConfig = block(StyleProbeConfig, "the style probe (the style terms' text side)")
    prompt_mapper: PromptMapperConfig = block(PromptMapperConfig, "style feature + prompt -> control tokens")
    gating: GatingConfig = block(GatingConfig, "how control tokens modulate the cross-attention K/V")
    lora: CrossAttentionLoraConfig = block(
        CrossAttentionLoraConfig, "LoRA on the cross-attention K/V projections"
    )


def model_config(block_values, where="model"):
    """A checked ModelConfig from a YAML `model:` block."""
    config = from_block(ModelConfig, block_values, where)
    check_prompts(config, where)
    return config


def check_prompts(config, where="model"):
    """The question template holds one {}: LAVIS's captioning types set `prompt: "a photo of"`, under which
    every question would silently become the same prompt; their caption prompt is model.caption_prompt."""
    if config.prompt.count("{}") != 1:
        raise ValueError(
            f"{where}.prompt {config.prompt!r} must hold {{}} once, where the question goes (e.g. "
            f"'Question: {{}} Answer:'); a captioning prompt such as 'a photo of' is {where}.caption_prompt"
        )
    if config.max_caption_len < 1:
        raise ValueError(f"{where}.max_caption_len is {config.max_caption_len}; it must be at least 1")

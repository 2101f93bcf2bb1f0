"""The `run:` block: the style_captioning task's keys, the runner's, and LAVIS's own; each of ours is a field
holding that key's one default. LAVIS keeps its keys' defaults in its own code; they are listed (with help)
so that a misspelt key anywhere in the block is an error rather than silently ignored.
"""

from dataclasses import dataclass, fields
from typing import Optional

from lavis_gated.configs.schema import check_keys, from_block, plain, setting

SELECT_BY = ("loss", "em", "vqa_acc", "style_head_acc", "probe_style_acc", "style_answer_label_rate")


@dataclass
class TaskConfig:
    lm_weight: float = setting(1.0, "weight of the LM loss on the answer tokens")
    style_name_weight: float = setting(
        0.0,
        "weight of the naming loss: the cross-entropy of the style probe's name distribution (each style's "
        "name scored as the answer to model.style_probe.prompt on the row's image) against the row's label",
    )
    style_kl_weight: float = setting(
        0.0,
        "weight of KL(teacher || student) between the style probe's name distribution and the image style "
        "head's (run.style_kl_teacher says which is the teacher)",
    )
    style_kl_temperature: float = setting(
        0.5,
        "both sides of the style KL are softmax(scores / this). Below 1 the image head's soft logits are "
        "sharpened toward the scale of the probe's name log-probabilities, so the KL asks whether both "
        "sides pick the same style rather than how unsure the head is; above 1 the lower ranks count",
    )
    style_kl_teacher: str = setting(
        "image",
        "the KL's teacher: image (the style head, trained on the labels by the CE term, teaches the probe) "
        "or probe (the probe teaches the style head); the KL is KL(teacher || student)",
        choices=("image", "probe"),
    )
    style_kl_detach: bool = setting(
        True,
        "no gradient reaches the KL's teacher, so an untrained side is never pulled toward the other; "
        "false: both sides move",
    )
    style_ce_weight: float = setting(0.0, "weight of the style head's cross-entropy against the style label")
    style_probe_share: float = setting(
        0.125,
        "in training, the share of each batch's labelled rows the style probe scores (at least one; drawn at "
        "random): it bounds the probe's cost, one more Q-Former and OPT pass per probed row. Evaluation "
        "probes every labelled row",
    )
    style_probe_max_rows: Optional[int] = setting(
        None, "in training, at most this many probed rows per batch (per process); null: no cap"
    )
    style_question_types: Optional[list[str]] = setting(
        ["style"],
        "question types that ask for a style: style_answer_label_rate is the rate at which their generated "
        "answers name the row's label (real ArtQuest has none); null or []: none",
    )
    style_token_max_share: float = setting(
        0.01,
        "a token of a style's name found in at least this share of the train split's answers that name "
        "no style is ordinary text: it does not count toward any_style_token_rate",
    )
    num_beams: int = setting(1, "beams when generating answers in evaluation")
    max_len: int = setting(10, "most new tokens (not words) generated in evaluation")
    min_len: int = setting(1, "fewest new tokens generated in evaluation")
    select_by: str = setting(
        "loss",
        "what agg_metrics is, and so which checkpoint is best: loss is 1 / (1 + val "
        "loss); the others as named (the *_acc ones read their *_agreement_with_style_table names where the "
        "labels are the style CNN's)",
        choices=SELECT_BY,
    )
    caption_tokenizer: str = setting(
        "auto",
        "tokenisation of bleu4/rougeL/cider: ptb (pycocoevalcap's PTB tokenizer, needs Java), words "
        "(lower-cased runs of letters and digits) or auto (ptb when Java runs, else words)",
        choices=("auto", "ptb", "words"),
    )
    amp: bool = setting(False, "autocast on CUDA")
    amp_dtype: str = setting(
        "float16",
        "float16 (with a GradScaler) or bfloat16 (no scaler; set model.opt_precision: bf16 too)",
        choices=("float16", "bfloat16"),
    )
    max_grad_norm: Optional[float] = setting(
        None, "clip the global gradient norm to this; null = no clipping"
    )
    max_consecutive_skips: int = setting(
        20, "steps with a non-finite loss or gradient are skipped; more than this many in a row stop the run"
    )


@dataclass
class RunnerConfig:
    runner: str = setting("runner_gated", "registered runner")
    device: str = setting("cuda", "cuda or cpu; the process-group backend follows (nccl / gloo)")
    num_threads: Optional[int] = setting(
        None, "intra-op threads per process; null: its share of the idle cores"
    )
    find_unused_parameters: bool = setting(False, "DDP option")
    save_last: bool = setting(
        False, "also keep checkpoint_last.pth each epoch: what a pre-empted run resumes from"
    )
    dist_timeout_minutes: float = setting(30, "process-group timeout: a dead rank fails the others this soon")
    imports: list[str] = setting(
        [], "modules imported before the config is resolved (your own registrations)"
    )
    frozen_feature_cache: Optional[str] = setting(None, "folder of the frozen-feature cache; null = off")
    tensorboard: bool = setting(
        True,
        "write TensorBoard events under <run folder>/tensorboard/ (rank 0): "
        "training curves, validation metrics, modulation per layer, pictures",
    )
    progress_seconds: float = setting(
        30.0,
        "a training progress line (epoch, step, loss parts, ETA) at "
        "least this often, besides each tenth of an epoch and every "
        "run.log_freq steps",
    )


# LAVIS's run keys (runner_base.py, base_task.py, dist_utils.py, the project YAMLs it ships) and what they
# mean.
LAVIS_RUN_KEYS = {
    "task": "registered task",
    "lr_sched": "LR schedule (e.g. linear_warmup_cosine_lr)",
    "init_lr": "peak LR",
    "min_lr": "final LR",
    "warmup_lr": "LR at the first step",
    "warmup_steps": "warm-up steps",
    "lr_decay_rate": "step schedule decay",
    "weight_decay": "AdamW weight decay",
    "max_epoch": "epochs",
    "max_iters": "iterations (iteration runner)",
    "iters_per_inner_epoch": "iterations per inner epoch",
    "batch_size_train": "per-process training batch",
    "batch_size_eval": "per-process evaluation batch",
    "num_workers": "data-loader workers",
    "accum_grad_iters": "gradient accumulation steps",
    "log_freq": "log every this many steps",
    "seed": "random seed",
    "output_dir": "folder of the run folders",
    "resume_ckpt_path": "continue the run saved in this checkpoint, in its folder",
    "evaluate": "evaluate only",
    "train_splits": "splits trained on",
    "valid_splits": "splits validated each epoch (val selects the best)",
    "test_splits": "splits tested with the best checkpoint",
    "train_dataset_ratios": "sampling ratio per dataset",
    "use_dist_eval_sampler": "shard evaluation over ranks",
    "world_size": "processes (set by the launcher)",
    "dist_url": "process-group init method",
    "distributed": "use torch.distributed when launched for it",
    "rank": "set at start",
    "gpu": "set at start (the local rank)",
    "dist_backend": "set at start",
    "report_metric": "LAVIS tasks",
    "inference_method": "LAVIS VQA tasks",
    "num_ans_candidates": "LAVIS VQA tasks",
    "prompt": "LAVIS VQA/caption tasks",
    "k_test": "LAVIS retrieval tasks",
    "num_captions": "LAVIS caption tasks",
    "top_p": "LAVIS sampling",
    "top_k": "LAVIS sampling",
    "repetition_penalty": "LAVIS generation",
}


def run_keys(cls):
    """The run keys a config dataclass (TaskConfig, RunnerConfig) reads."""
    return tuple(f.name for f in fields(cls))


def check_run_block(run_block, task_keys=(), where="run"):
    """Raise ConfigKeyError for a key of `run:` that neither the task (`task_keys`), this runner nor LAVIS
    knows."""
    check_keys(
        plain(run_block) or {}, set(run_keys(RunnerConfig)) | set(task_keys) | set(LAVIS_RUN_KEYS), where
    )


def task_config(run_block, where="run", check=True):
    """The style_captioning task's settings from `run:`, the whole block checked unless check is false."""
    if check:
        check_run_block(run_block, run_keys(TaskConfig), where)
    return _read(TaskConfig, run_block, where)


def runner_config(run_block, where="run"):
    """The runner's settings from `run:` (the block is checked once, by the task or at start)."""
    return _read(RunnerConfig, run_block, where)


def _read(cls, run_block, where):
    values = plain(run_block) or {}
    return from_block(cls, values, where, ignore=[k for k in values if k not in run_keys(cls)])

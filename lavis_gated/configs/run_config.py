"""The `run:` block: the style_captioning task's keys, the runner's, and LAVIS's own; each of ours is a field
holding that key's one default. LAVIS keeps its keys' defaults in its own code; they are listed (with help)
so that a misspelt key anywhere in the block is an error rather than silently ignored.
"""

import math
import os
import tempfile
from dataclasses import dataclass, fields
from numbers import Real
from typing import Optional

from lavis_gated.configs.schema import check_keys, from_block, plain, setting

SELECT_BY = (
    "loss",
    "em",
    "vqa_acc",
    "style_head_acc",
    "probe_style_acc",
    "style_answer_label_rate",
    "caption_cider",
    "caption_style_naming_rate",
)


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
        "in training, the chance that the style probe scores a labelled row, drawn anew each epoch by a hash "
        "of the row's id and run.seed (so N processes probe the rows one does): it bounds the probe's cost, "
        "one more row of the Q-Former's and OPT's pass per probed row. Evaluation probes every labelled row",
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
        "tokenisation of the text metrics (bleu, meteor, rougeL, cider): ptb (pycocoevalcap's PTB tokenizer, "
        "needs Java), words "
        "(lower-cased runs of letters and digits) or auto (ptb when Java runs, else words)",
        choices=("auto", "ptb", "words"),
    )
    meteor: bool = setting(
        True,
        "compute METEOR (pycocoevalcap's Meteor: needs Java, named in not_computed without it; its first use "
        "in a process loads paraphrase tables, about 25 s)",
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


POSITIVE_RUN_KEYS = ("max_epoch", "batch_size_train", "batch_size_eval", "accum_grad_iters")
NON_NEGATIVE_RUN_KEYS = ("init_lr", "min_lr", "warmup_lr", "warmup_steps")


def _number(value):
    """value as a float when it is a number (not a bool), else None: the type itself is schema's concern."""
    if isinstance(value, bool) or not isinstance(value, (Real, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def check_run_values(run_block, where="run"):
    """Raise ValueError, naming the key and its value, for a `run:` value that would fail deep in the run or,
    worse, run and give wrong results: epochs, batch sizes and accum_grad_iters below 1 (max_epoch 0 used
    to end in a missing checkpoint_best.pth), learning rates below 0 (a negative min_lr drives the cosine
    schedule's lr negative, so the loss rises with exit status 0; a negative warmup_lr reads as no warm-up),
    min_lr above init_lr, and an output_dir that is not a folder this process can write to (checked by
    creating it and a temporary file in it, since os.access ignores read-only file systems).
    Returns the absolute output_dir (None when the block names none)."""
    values = plain(run_block) or {}
    evaluate_only = bool(values.get("evaluate", False))
    for key in POSITIVE_RUN_KEYS:
        if key == "max_epoch" and evaluate_only:
            continue  # evaluation never trains: LAVIS's evaluate YAMLs carry a max_epoch they do not use
        number = _number(values.get(key))
        if number is not None and not (number >= 1 and number == int(number)):
            raise ValueError(f"{where}.{key} is {values[key]!r}; it must be a whole number of at least 1")
    for key in NON_NEGATIVE_RUN_KEYS:
        number = _number(values.get(key))
        if number is not None and not (math.isfinite(number) and number >= 0):
            raise ValueError(f"{where}.{key} is {values[key]!r}; it must be a finite number of at least 0")
    init_lr, min_lr = _number(values.get("init_lr")), _number(values.get("min_lr"))
    if init_lr is not None and min_lr is not None and min_lr > init_lr:
        raise ValueError(
            f"{where}.min_lr is {values['min_lr']!r}, above {where}.init_lr {values['init_lr']!r}: the "
            "schedule would raise the learning rate as it decays; set min_lr at most init_lr"
        )
    if values.get("output_dir") in (None, ""):
        return None
    return writable_folder(values["output_dir"], f"{where}.output_dir")


def writable_folder(value, key):
    """The absolute folder `value` (~ expanded), created if needed; ValueError naming `key` and the value
    when it is a file, cannot be created or cannot be written to."""
    path = os.path.abspath(os.path.expanduser(str(value)))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{key} is {value!r}: {path} is a file, not a folder; name a folder for the runs")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ValueError(
            f"{key} is {value!r}: {path} is not a folder this process can write to "
            f"({type(err).__name__}: {err.strerror or err}); name a writable folder"
        ) from None
    return path


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

"""Task `style_captioning`: image-conditioned answers/captions with the style regularisers.

The loss and its parts are tasks/losses.py's; an evaluated split's records and files are
tasks/evaluation.py's, its metrics tasks/metrics.py's; build-time checks are tasks/checks.py's. This module
wires them into LAVIS's task interface. The `run:` keys it reads are TaskConfig's (configs/run_config.py).
The style vocabulary is built from the train split here (or taken from the checkpoint a run resumes) and
handed to the model, which then carries it in every checkpoint.

One training epoch's inner loop: LAVIS's (base_task.py:_train_inner_loop) with every loss part logged,
autocast in the configured dtype, non-finite steps skipped (tasks/optimizer_step.py), optional gradient
clipping, and statistics synchronised on the model's device (logger.py:43 assumes CUDA). Skipped steps are
left out of the averages. Progress lines (and TensorBoard's training curves) come from common/progress.py,
in place of MetricLogger.log_every's, which prints every log_freq steps only.
"""

import json
import logging

import torch
import torch.distributed as dist
from lavis.common.dist_utils import is_dist_avail_and_initialized, is_main_process
from lavis.common.logger import MetricLogger, SmoothedValue
from lavis.common.registry import registry
from lavis.datasets.data_utils import prepare_sample
from lavis.tasks.base_task import BaseTask
from omegaconf import open_dict

from lavis_gated.common.progress import TrainingProgress
from lavis_gated.configs.run_config import TaskConfig, run_keys, task_config
from lavis_gated.configs.schema import from_block
from lavis_gated.styles import StyleVocabulary
from lavis_gated.tasks import checks, losses
from lavis_gated.tasks.checks import report_answer_lengths, report_caption_lengths
from lavis_gated.tasks.evaluation import batch_records, evaluate_split, write_split_outputs
from lavis_gated.tasks.metrics import is_caption, split_metrics
from lavis_gated.tasks.optimizer_step import GuardedOptimizerStep

AMP_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}  # the runner's GradScaler keys on "float16"


def check_probe_settings(config):
    """run.style_probe_share in (0, 1] and run.style_probe_max_rows a positive count (or null)."""
    if not 0 < config.style_probe_share <= 1:
        raise ValueError(
            f"run.style_probe_share is {config.style_probe_share}; it must be in (0, 1] (the share of each "
            "batch's labelled rows the style probe scores)"
        )
    if config.style_probe_max_rows is not None and config.style_probe_max_rows < 1:
        raise ValueError(
            f"run.style_probe_max_rows is {config.style_probe_max_rows}; it must be at least 1, or null"
        )


@registry.register_task("style_captioning")
class StyleCaptioningTask(BaseTask):
    RUN_KEYS = run_keys(TaskConfig)  # the run: keys this task reads (the rest are the runner's and LAVIS's)

    def __init__(self, config=None, seed=0, **settings):
        """config: a TaskConfig; or its keys as keyword arguments (checked as the run block is). seed: the
        run's (run.seed), which with the epoch draws the style probe's rows (losses.probe_rows)."""
        super().__init__()
        self.config = config or from_block(TaskConfig, settings, "run")
        self.seed = seed
        self.weights = losses.weights_of(self.config)
        check_probe_settings(self.config)
        self.style_question_types = set(self.config.style_question_types or [])
        self.generation = {
            "num_beams": self.config.num_beams,
            "max_length": self.config.max_len,
            "min_length": self.config.min_len,
        }
        self.select_by = self.config.select_by
        self.amp = self.config.amp
        self.amp_dtype = AMP_DTYPES[self.config.amp_dtype]
        self.optimizer_step = None
        self.train_style_vocabulary = None
        self.train_rows = []  # the train split's rows: their answers give the styles' forms (tasks/checks.py)
        # "<dataset>/<split>" -> style labels, to report styles the model does not know
        self.split_styles = {}
        self.split_answers = {}  # "<dataset>/<split>" -> reference answers, checked against the token budgets
        self.answer_lengths = None  # {split: answers over run.max_len / model.max_txt_len // 2}
        self.split_captions = {}  # "<dataset>/<split>" -> reference captions, checked against max_caption_len
        self.caption_lengths = None  # {split: captions cut by model.max_caption_len, over run.max_len}
        self.style_names = []  # the evaluated model's vocabulary, for the answers' style rates
        self.modulation_layout = None  # gating type and Q-Former layers of the evaluated model's modulation
        self.last_train_stats = None  # for the one-line summary after the epoch's validation
        self.checkpoint_epoch = None  # set by the runner when it reloads checkpoint_best.pth to test it
        self.progress = None  # the runner's TrainingProgress (its lines, the run's ETA, TensorBoard's curves)

    @staticmethod
    def check_config(run_cfg):
        """The task's settings of the run block, checked (keys and types)."""
        return task_config(run_cfg)

    @classmethod
    def setup_task(cls, cfg):
        return cls(cls.check_config(cfg.run_cfg), seed=cfg.run_cfg.get("seed", 0))

    # ---- building -------------------------------------------------------------------------------

    def build_datasets(self, cfg):
        datasets = super().build_datasets(cfg)
        self.split_styles = {
            f"{name}/{split}": d.style_labels()
            for name, splits in datasets.items()
            for split, d in splits.items()
        }
        labels = [
            label
            for splits in datasets.values()
            if "train" in splits
            for label in splits["train"].style_labels()
        ]
        if labels:
            self.train_style_vocabulary = StyleVocabulary.from_labels(labels)
            logging.info("style vocabulary from the train split: %s", self.train_style_vocabulary.names)
        self.train_rows = checks.train_rows(datasets)
        self.check_data(datasets)
        return datasets

    def check_data(self, datasets):
        """Remembers each split's answers and captions for report_answer_lengths and report_caption_lengths
        (the style terms' coverage is checked once the model's vocabulary is known: build_model,
        checks.check_coverage)."""
        self.split_answers, self.split_captions = {}, {}
        for name, splits in datasets.items():
            for split, d in splits.items():
                rows = d.annotation
                self.split_answers[f"{name}/{split}"] = [r["answer"] for r in rows if not is_caption(r)]
                self.split_captions[f"{name}/{split}"] = [
                    c for r in rows if is_caption(r) for c in r.get("references") or [r["answer"]]
                ]

    def build_model(self, cfg):
        """model.style_names: a finetuned checkpoint's, else those of the checkpoint the run resumes, else the
        train split's."""
        model_cfg = cfg.model_cfg
        explicit = checks.explicit_style_names(model_cfg, registry.get_model_class(model_cfg.arch))
        resumed = checks.resumed_style_vocabulary(cfg.run_cfg, self.train_style_vocabulary)
        vocabulary = resumed or self.train_style_vocabulary
        if vocabulary is not None and not model_cfg.get("load_finetuned", False):
            with open_dict(model_cfg):
                model_cfg.style_names = list(vocabulary.names)
        model = super().build_model(cfg)
        if model_cfg.get("load_finetuned", False):
            source = f"the checkpoint model.finetuned {model_cfg.get('finetuned')}"
        elif resumed is not None:
            source = f"the checkpoint resumed, {cfg.run_cfg.get('resume_ckpt_path')}"
        else:
            source = "the train split's style labels"
        checks.warn_replaced_style_names(explicit, model.vocabulary.names, source)
        if self.train_rows:
            if not model_cfg.get("load_finetuned", False):
                checks.use_train_answer_forms(model, self.train_rows, self.config.style_token_max_share)
            covered = checks.term_coverage(model, self.train_rows)
            training = not cfg.run_cfg.get("evaluate", False)
            checks.check_coverage(covered, self.weights, self.config, fail=training)
        checks.report_unseen_styles(self.split_styles, model.vocabulary)
        self.warn_unscaled_fp16(model, cfg.run_cfg)
        self.answer_lengths = report_answer_lengths(
            model.opt_tokenizer,
            self.split_answers,
            model.eos_token_id,
            self.config.max_len,
            model.max_txt_len,
        )
        if any(self.split_captions.values()):
            self.caption_lengths = report_caption_lengths(
                model.opt_tokenizer,
                self.split_captions,
                model.eos_token_id,
                self.config.max_len,
                model.max_caption_len,
            )
        return model

    def warn_unscaled_fp16(self, model, run_cfg):
        """bf16 amp runs without a GradScaler, but the frozen OPT stored in fp16 still computes in fp16, so
        the gradients it passes back to the Q-Former are unscaled fp16 values and the small ones underflow to
        0."""
        if not (
            self.amp
            and self.amp_dtype == torch.bfloat16
            and str(run_cfg.get("device", "")).startswith("cuda")
        ):
            return
        if getattr(model, "opt_precision", None) == "fp16":
            logging.warning(
                "run.amp_dtype is bfloat16 (no GradScaler) but model.opt_precision is fp16: gradients "
                "through the frozen OPT are unscaled fp16 and may underflow; set model.opt_precision: "
                "bf16 for bf16 training"
            )

    # ---- training -------------------------------------------------------------------------------

    def per_sample_losses(self, model, samples):
        """The loss parts per sample; the style probe runs in evaluation, and in training when its terms (the
        naming loss, the KL) are weighted."""
        probe = not model.training or self.weights["style_kl"] > 0 or self.weights["style_name_loss"] > 0
        return losses.per_sample_parts(model, samples, self.config, probe, self.seed)

    def training_terms(self, model, samples):
        parts = self.per_sample_losses(model, samples)
        return losses.batch_terms(parts, self.weights, losses.global_batch_shares(parts))

    def train_step(self, model, samples):
        return self.training_terms(model, samples)["loss"]

    def autocast(self, cuda_enabled):
        return torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.amp and cuda_enabled)

    def _train_inner_loop(
        self,
        epoch,
        iters_per_epoch,
        model,
        data_loader,
        optimizer,
        lr_scheduler,
        scaler=None,
        start_iters=None,
        log_freq=50,
        cuda_enabled=False,
        accum_grad_iters=1,
    ):
        """Train `iters_per_epoch` steps; returns the epoch's averaged statistics (strings, as LAVIS logs
        them), also kept as last_train_stats for the epoch's summary line."""
        step = self._optimizer_step(optimizer, scaler)
        progress = self.progress or TrainingProgress(log_freq=log_freq)  # None: lines without the run's ETA
        if not hasattr(data_loader, "__next__"):
            data_loader = iter(data_loader)
        skipped_before = step.skipped
        metric_logger = MetricLogger(delimiter="  ")
        metric_logger.add_meter("lr", SmoothedValue(window_size=1, fmt="{value:.6f}"))
        inner_epoch = epoch if start_iters is None else start_iters // iters_per_epoch
        window, finite = [], None
        progress.epoch_started(epoch, iters_per_epoch)
        for i in range(iters_per_epoch):
            samples = prepare_sample(next(data_loader), cuda_enabled=cuda_enabled)
            samples.update({"epoch": inner_epoch, "num_iters_per_epoch": iters_per_epoch, "iters": i})
            lr_scheduler.step(cur_epoch=inner_epoch, cur_step=i)
            with self.autocast(cuda_enabled):
                terms = self.training_terms(model, samples)
            loss = terms["loss"]
            (scaler.scale(loss) if scaler is not None else loss).backward()
            window.append(terms)
            loss_is_finite = torch.isfinite(loss.detach())
            finite = loss_is_finite if finite is None else finite & loss_is_finite
            if (i + 1) % accum_grad_iters == 0:
                stepped, grad_norm = step(finite, where=f"at epoch {epoch}, iteration {i}")
                if stepped:
                    for t in window:
                        values = {k: v.item() for k, v in t.items()}
                        metric_logger.update(**values)
                        progress.record(values)
                    metric_logger.update(grad_norm=grad_norm.item())
                    progress.record({"grad_norm": grad_norm.item()})
                window, finite = [], None
            metric_logger.update(lr=step.optimizer.param_groups[0]["lr"])
            progress.record({"lr": step.optimizer.param_groups[0]["lr"]})
            progress.step_done(i, skipped=step.skipped)
        progress.epoch_ended()
        synchronise_meters(metric_logger, device="cuda" if cuda_enabled else "cpu")
        logging.info("Averaged stats: " + str(metric_logger.global_avg()))
        stats = {k: f"{meter.global_avg:.4f}" for k, meter in metric_logger.meters.items()}
        stats["skipped_steps"] = step.skipped - skipped_before
        self.last_train_stats = {"epoch": epoch, **stats}  # "epoch" lands in log.txt as train_epoch
        return self.last_train_stats

    def _optimizer_step(self, optimizer, scaler):
        """One GuardedOptimizerStep per optimizer, so skips in a row are counted across epochs."""
        if self.optimizer_step is None or self.optimizer_step.optimizer is not optimizer:
            self.optimizer_step = GuardedOptimizerStep(
                optimizer, scaler, self.config.max_grad_norm, self.config.max_consecutive_skips
            )
        return self.optimizer_step

    # ---- evaluation -----------------------------------------------------------------------------

    def before_evaluation(self, model, dataset, **kwargs):
        """Remember what the metrics and the heatmap need from the model: style names, modulation layout."""
        super().before_evaluation(model, dataset, **kwargs)
        core = model.module if hasattr(model, "module") else model
        self.style_names = list(core.vocabulary.names)
        modulation = getattr(core, "kv_modulation", None)
        self.modulation_layout = (
            None
            if modulation is None
            else {
                "gating_type": modulation.gating_type,
                # the layers it acts in (OPT's for style_prefix, the Q-Former's otherwise)
                "qformer_layers": getattr(modulation, "layer_indices", None)
                or [
                    i for i, layer in enumerate(core.Qformer.bert.encoder.layer) if layer.has_cross_attention
                ],
            }
        )

    def valid_step(self, model, samples):
        """Per-sample records of a batch (evaluation.batch_records)."""
        return batch_records(
            model,
            samples,
            self.per_sample_losses(model, samples),
            self.generation,
            with_modulation=bool(self.modulation_layout),
        )

    def evaluation(self, model, data_loader, cuda_enabled=True):
        """Every rank evaluates its share; rank 0 gets all records, once per question_id
        (evaluation.evaluate_split)."""
        return evaluate_split(self, model, data_loader, cuda_enabled)

    def metrics(self, records):
        return split_metrics(
            records,
            self.weights,
            self.select_by,
            self.style_names,
            self.config.caption_tokenizer,
            self.style_question_types,
            self.config.meteor,
        )

    def after_evaluation(self, val_result, split_name, epoch, **kwargs):
        """Metrics for the split, written with the split's files (tasks/evaluation.py) by rank 0."""
        m = self.metrics(val_result)
        m["epoch"] = epoch
        if epoch == "best" and self.checkpoint_epoch is not None:
            m["checkpoint_epoch"] = self.checkpoint_epoch  # the epoch checkpoint_best.pth was saved at
        if is_main_process():
            write_split_outputs(
                registry.get_path("output_dir"),
                registry.get_path("result_dir"),
                split_name,
                epoch,
                val_result,
                m,
                self.modulation_layout,
            )
            logging.info("%s metrics (epoch %s): %s", split_name, epoch, json.dumps(m))
            if isinstance(epoch, int):
                from lavis_gated.reports.tables import (
                    epoch_summary,  # light module; see lavis_gated/__init__.py
                )

                train = self.last_train_stats if (self.last_train_stats or {}).get("epoch") == epoch else None
                logging.info(epoch_summary(epoch, train, split_name, m, self.select_by))
        return m


def synchronise_meters(metric_logger, device):
    """Sum counts and totals of every meter across ranks (on CPU tensors under gloo)."""
    if not is_dist_avail_and_initialized():
        return
    for meter in metric_logger.meters.values():
        t = torch.tensor([meter.count, meter.total], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        meter.count, meter.total = int(t[0].item()), float(t[1].item())

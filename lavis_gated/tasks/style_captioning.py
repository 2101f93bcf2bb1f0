"""Task `style_captioning`: image-conditioned answers/captions with the style regularisers.

The loss and its parts are loss_terms'; the training loop is training_loop's; an evaluated split's records
are evaluation_records', its metrics split_metrics', its files evaluation_outputs'. This module wires them
into LAVIS's task interface. The `run:` keys it reads are TaskConfig's (configs/run_config.py). The style
vocabulary is built from the train split here (or taken from the checkpoint a run resumes) and handed to the
model, which then carries it in every checkpoint.
"""

import json
import logging

import torch
from lavis.common.dist_utils import is_main_process
from lavis.common.registry import registry
from lavis.tasks.base_task import BaseTask
from omegaconf import open_dict

from lavis_gated.configs.run_config import SELECT_BY, TaskConfig, run_keys, task_config  # noqa: F401  (SELECT_BY re-exported)
from lavis_gated.configs.schema import from_block
from lavis_gated.datasets.style_vocabulary import StyleVocabulary
from lavis_gated.tasks import loss_terms, train_styles
from lavis_gated.tasks.answer_lengths import report_answer_lengths
from lavis_gated.tasks.evaluation_outputs import write_split_outputs
from lavis_gated.tasks.evaluation_records import batch_records, evaluate_split
from lavis_gated.tasks.optimizer_step import GuardedOptimizerStep
from lavis_gated.tasks.split_metrics import split_metrics
from lavis_gated.tasks.training_loop import train_inner_loop

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

    def __init__(self, config=None, **settings):
        """config: a TaskConfig; or its keys as keyword arguments (checked as the run block is)."""
        super().__init__()
        self.config = config or from_block(TaskConfig, settings, "run")
        self.weights = loss_terms.weights_of(self.config)
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
        self.train_rows = []  # the train split's rows: their answers give the styles' forms (train_styles)
        # "<dataset>/<split>" -> style labels, to report styles the model does not know
        self.split_styles = {}
        self.split_answers = {}  # "<dataset>/<split>" -> reference answers, checked against the token budgets
        self.answer_lengths = None  # {split: answers over run.max_len / model.max_txt_len // 2}
        self.style_names = []  # the evaluated model's vocabulary, for the answers' style rates
        self.modulation_layout = None  # gating type and Q-Former layers of the evaluated model's modulation
        self.last_train_stats = None  # for the one-line summary after the epoch's validation
        self.checkpoint_epoch = None  # set by the runner when it reloads checkpoint_best.pth to test it
        self.progress = None  # the runner's TrainingProgress (its lines, the run's ETA, TensorBoard's curves)

    @classmethod
    def setup_task(cls, cfg):
        return cls(task_config(cfg.run_cfg))

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
        self.train_rows = train_styles.train_rows(datasets)
        self.check_data(datasets)
        return datasets

    def check_data(self, datasets):
        """Remembers each split's answers for report_answer_lengths (the style terms' coverage is checked
        once the model's vocabulary is known: build_model, train_styles.check_coverage)."""
        self.split_answers = {
            f"{name}/{split}": [row["answer"] for row in d.annotation]
            for name, splits in datasets.items()
            for split, d in splits.items()
        }

    def build_model(self, cfg):
        """model.style_names: a finetuned checkpoint's, else those of the checkpoint the run resumes, else the
        train split's."""
        model_cfg = cfg.model_cfg
        vocabulary = self._resumed_style_vocabulary(cfg.run_cfg) or self.train_style_vocabulary
        if vocabulary is not None and not model_cfg.get("load_finetuned", False):
            with open_dict(model_cfg):
                model_cfg.style_names = list(vocabulary.names)
        model = super().build_model(cfg)
        if self.train_rows:
            if not model_cfg.get("load_finetuned", False):
                train_styles.use_train_answer_forms(model, self.train_rows, self.config.style_token_max_share)
            covered = train_styles.term_coverage(model, self.train_rows)
            training = not cfg.run_cfg.get("evaluate", False)
            train_styles.check_coverage(covered, self.weights, self.config, fail=training)
        self.report_unseen_styles(model.vocabulary)
        self.warn_unscaled_fp16(model, cfg.run_cfg)
        self.answer_lengths = report_answer_lengths(
            model.opt_tokenizer,
            self.split_answers,
            model.eos_token_id,
            self.config.max_len,
            model.max_txt_len,
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

    def report_unseen_styles(self, vocabulary):
        """Log, per split, the rows whose style the model lacks (train_styles); {split: {style: rows}}."""
        return train_styles.report_unseen_styles(self.split_styles, vocabulary)

    def _resumed_style_vocabulary(self, run_cfg):
        """The style vocabulary stored in run.resume_ckpt_path (None when not resuming a training run)."""
        return train_styles.resumed_style_vocabulary(run_cfg, self.train_style_vocabulary)

    # ---- training -------------------------------------------------------------------------------

    def per_sample_losses(self, model, samples):
        """The loss parts per sample; the style probe runs in evaluation, and in training when its terms (the
        naming loss, the KL) are weighted."""
        probe = not model.training or self.weights["style_kl"] > 0 or self.weights["style_name_loss"] > 0
        return loss_terms.per_sample_parts(model, samples, self.config, probe)

    def training_terms(self, model, samples):
        parts = self.per_sample_losses(model, samples)
        return loss_terms.batch_terms(parts, self.weights, loss_terms.global_batch_shares(parts))

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
        step = self._optimizer_step(optimizer, scaler)
        stats = train_inner_loop(
            self,
            epoch,
            iters_per_epoch,
            model,
            data_loader,
            lr_scheduler,
            step,
            scaler,
            start_iters,
            log_freq,
            cuda_enabled,
            accum_grad_iters,
            self.progress,
        )
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
                "qformer_layers": [
                    i for i, layer in enumerate(core.Qformer.bert.encoder.layer) if layer.has_cross_attention
                ],
            }
        )

    def valid_step(self, model, samples):
        """Per-sample records of a batch (evaluation_records.batch_records)."""
        return batch_records(
            model,
            samples,
            self.per_sample_losses(model, samples),
            self.generation,
            with_modulation=bool(self.modulation_layout),
        )

    def evaluation(self, model, data_loader, cuda_enabled=True):
        """Every rank evaluates its share; rank 0 gets all records, once per question_id
        (evaluation_records.evaluate_split)."""
        return evaluate_split(self, model, data_loader, cuda_enabled)

    def metrics(self, records):
        return split_metrics(
            records,
            self.weights,
            self.select_by,
            self.style_names,
            self.config.caption_tokenizer,
            self.style_question_types,
        )

    def after_evaluation(self, val_result, split_name, epoch, **kwargs):
        """Metrics for the split, written with the split's files (evaluation_outputs) by rank 0."""
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
                from lavis_gated.report import epoch_summary  # light module; see lavis_gated/__init__.py

                train = self.last_train_stats if (self.last_train_stats or {}).get("epoch") == epoch else None
                logging.info(epoch_summary(epoch, train, split_name, m, self.select_by))
        return m

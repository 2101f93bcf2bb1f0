"""Task `style_captioning`: image-conditioned answers/captions with the style regularisers.

total = lm_weight * LM + style_hit_weight * (1 - soft style hit rate) + style_kl_weight * symmetric KL
        + style_ce_weight * CE(image style head, style label)
The weights and evaluation settings are `run:` keys of the project YAML. The style vocabulary is built
from the train split here (or taken from the checkpoint a run resumes) and handed to the model, which then
carries it in every checkpoint. Training steps with a non-finite loss or gradient norm are skipped
(optimizer_step.py), and every term is normalised over the global batch, so N processes train exactly
like one process with N times the batch.
"""
import json
import logging
import math
import os

import torch
import torch.distributed as dist
from lavis.common.dist_utils import get_world_size, is_dist_avail_and_initialized, is_main_process
from lavis.common.logger import MetricLogger, SmoothedValue
from lavis.common.registry import registry
from lavis.datasets.data_utils import prepare_sample
from lavis.tasks.base_task import BaseTask
from omegaconf import open_dict
from tqdm import tqdm

from lavis_gated.atomic_files import atomic_file
from lavis_gated.datasets.style_vocabulary import StyleVocabulary, unseen_styles
from lavis_gated.models.blip2_opt_gated import style_names_in_checkpoint
from lavis_gated.checkpoint_io import load_checkpoint, local_checkpoint_path
from lavis_gated.tasks import style_losses
from lavis_gated.tasks.optimizer_step import GuardedOptimizerStep
from lavis_gated.tasks.answer_metrics import answer_metrics, style_word_hit_rate
from lavis_gated.tasks.modulation_summary import summarise_modulation
from lavis_gated.tasks.text_metrics import caption_metrics

SELECT_BY = ("loss", "em", "vqa_acc", "style_head_acc", "style_hit_rate")
_AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}  # the runner's GradScaler keys on "float16"


@registry.register_task("style_captioning")
class StyleCaptioningTask(BaseTask):
    def __init__(self, lm_weight=1.0, style_hit_weight=0.0, style_kl_weight=0.0, style_ce_weight=0.0,
                 style_question_types=None, num_beams=1, max_len=10, min_len=1, select_by="loss",
                 amp=False, amp_dtype="float16", max_grad_norm=None, max_consecutive_skips=20):
        super().__init__()
        if select_by not in SELECT_BY:
            raise ValueError(f"run.select_by {select_by!r} is not one of {SELECT_BY}")
        if amp_dtype not in _AMP_DTYPES:
            raise ValueError(f"run.amp_dtype {amp_dtype!r} is not one of {sorted(_AMP_DTYPES)}")
        self.weights = {"lm": lm_weight, "style_hit": style_hit_weight, "style_kl": style_kl_weight, "style_ce": style_ce_weight}
        self.style_question_types = set(style_question_types) if style_question_types else None
        self.generation = {"num_beams": num_beams, "max_length": max_len, "min_length": min_len}
        self.select_by = select_by
        self.amp = amp
        self.amp_dtype = _AMP_DTYPES[amp_dtype]
        self.max_grad_norm = max_grad_norm
        self.max_consecutive_skips = max_consecutive_skips
        self.optimizer_step = None
        self.train_style_vocabulary = None
        self.split_styles = {}  # "<dataset>/<split>" -> style labels, to report styles the model does not know
        self.style_names = []  # the evaluated model's vocabulary, for style_word_hit_rate
        self.modulation_layout = None  # gating type and Q-Former layers of the evaluated model's modulation
        self.last_train_stats = None  # for the one-line summary after the epoch's validation

    @classmethod
    def setup_task(cls, cfg):
        run = cfg.run_cfg
        keys = ("lm_weight", "style_hit_weight", "style_kl_weight", "style_ce_weight", "style_question_types",
                "num_beams", "max_len", "min_len", "select_by", "amp", "amp_dtype", "max_grad_norm",
                "max_consecutive_skips")
        kwargs = {k: run.get(k) for k in keys if run.get(k) is not None}
        if "style_question_types" in kwargs:
            kwargs["style_question_types"] = list(kwargs["style_question_types"])
        return cls(**kwargs)

    # ---- building -------------------------------------------------------------------------------

    def build_datasets(self, cfg):
        datasets = super().build_datasets(cfg)
        self.split_styles = {f"{name}/{split}": d.style_labels() for name, splits in datasets.items()
                             for split, d in splits.items()}
        labels = [label for splits in datasets.values() if "train" in splits for label in splits["train"].style_labels()]
        if labels:
            self.train_style_vocabulary = StyleVocabulary.from_labels(labels)
            logging.info("style vocabulary from the train split: %s", self.train_style_vocabulary.names)
        types = {row["question_type"] for splits in datasets.values() if "train" in splits
                 for row in splits["train"].annotation}
        if self.style_question_types is None and len(types) > 1 and self.weights["style_hit"] > 0:
            logging.warning("run.style_question_types is null: the style hit-rate term also pushes style tokens into "
                            "answers of question types %s; list the types that ask for a style", sorted(types))
        return datasets

    def build_model(self, cfg):
        """model.style_names: a finetuned checkpoint's, else those of the checkpoint the run resumes, else the
        train split's."""
        model_cfg = cfg.model_cfg
        vocabulary = self._resumed_style_vocabulary(cfg.run_cfg) or self.train_style_vocabulary
        if vocabulary is not None and not model_cfg.get("load_finetuned", False):
            with open_dict(model_cfg):
                model_cfg.style_names = list(vocabulary.names)
        model = super().build_model(cfg)
        self.report_unseen_styles(model.vocabulary)
        self.warn_unscaled_fp16(model, cfg.run_cfg)
        return model

    def warn_unscaled_fp16(self, model, run_cfg):
        """bf16 amp runs without a GradScaler, but the frozen OPT stored in fp16 still computes in fp16, so the
        gradients it passes back to the Q-Former are unscaled fp16 values and the small ones underflow to 0."""
        if not (self.amp and self.amp_dtype == torch.bfloat16 and str(run_cfg.get("device", "")).startswith("cuda")):
            return
        if getattr(model, "opt_precision", None) == "fp16":
            logging.warning("run.amp_dtype is bfloat16 (no GradScaler) but model.opt_precision is fp16: gradients "
                            "through the frozen OPT are unscaled fp16 and may underflow; set model.opt_precision: "
                            "bf16 for bf16 training")

    def report_unseen_styles(self, vocabulary):
        """Log, per split, the rows whose style the model's vocabulary lacks (evaluated as no style);
        returns {split: {style: rows}}."""
        unseen = {split: u for split, labels in self.split_styles.items() if (u := unseen_styles(labels, vocabulary))}
        for split, styles in unseen.items():
            logging.warning("%s: %d rows have styles not in the model's style vocabulary (counted as "
                            "num_unknown_style, left out of the style terms): %s", split, sum(styles.values()), styles)
        return unseen

    def _resumed_style_vocabulary(self, run_cfg):
        """The style vocabulary stored in run.resume_ckpt_path (None when not resuming a training run)."""
        path = run_cfg.get("resume_ckpt_path", None)
        if not path or run_cfg.get("evaluate", False):
            return None
        names = style_names_in_checkpoint(load_checkpoint(local_checkpoint_path(path), mmap=True))
        if not names:
            return None
        vocabulary = StyleVocabulary(names)
        if self.train_style_vocabulary is not None and vocabulary != self.train_style_vocabulary:
            logging.warning("resuming %s: its style vocabulary %s is kept, although the train split now has %s",
                            path, vocabulary.names, self.train_style_vocabulary.names)
        return vocabulary

    # ---- losses ---------------------------------------------------------------------------------

    def _style_rows(self, style_ids, question_types):
        """(B,) bool: rows the hit-rate and KL terms apply to (labelled, and of a style question type if set)."""
        rows = style_ids >= 0
        if self.style_question_types is not None:
            chosen = torch.tensor([t in self.style_question_types for t in question_types], dtype=torch.bool,
                                  device=rows.device)
            rows = rows & chosen
        return rows

    def per_sample_losses(self, model, samples):
        """Forward once; every loss part per sample (B,) plus the metric ingredients."""
        out = model(samples)
        core = model.module if hasattr(model, "module") else model
        style_ids = out["style_ids"]
        word_mask = style_losses.answer_word_mask(out["targets"], core.eos_token_id)
        style_set = core.style_token_set
        hit_rate = style_losses.soft_style_hit_rate(out["logits"], word_mask, style_set)
        text_log_probs = style_losses.text_style_log_probs(out["logits"], word_mask, core.style_tokens, core.style_token_mask)
        image_log_probs = torch.log_softmax(out["image_style_logits"].float(), -1)
        hits, positions = style_losses.argmax_style_hits(out["logits"], word_mask, style_set)
        return {
            "lm_loss": style_losses.lm_loss_per_sample(out["logits"], out["targets"]),
            "batch_lm_loss": out["loss"],
            "lm_tokens": (out["targets"] != style_losses.IGNORE).sum(),
            "style_hit_loss": 1.0 - hit_rate,
            "style_kl": style_losses.symmetric_kl(image_log_probs, text_log_probs),
            "style_ce": style_losses.style_cross_entropy(out["image_style_logits"].float(), style_ids),
            "style_rows": self._style_rows(style_ids, samples.get("question_type", [""] * len(style_ids))),
            "style_ids": style_ids,
            "style_head_prediction": out["image_style_logits"].argmax(-1),
            "style_hits": hits,
            "style_positions": positions,
        }

    def combine(self, parts, shares=None):
        """Scalar losses of a batch: each weighted term averaged over the rows it applies to.

        shares (from global_batch_shares) rescale each rank-local mean into this rank's part of the global
        batch's mean."""
        rows, labelled = parts["style_rows"], parts["style_ids"] >= 0
        terms = {
            "lm_loss": parts["batch_lm_loss"],
            "style_hit_loss": style_losses.masked_mean(parts["style_hit_loss"], rows),
            "style_kl": style_losses.masked_mean(parts["style_kl"], rows),
            "style_ce": style_losses.masked_mean(parts["style_ce"], labelled),
        }
        if shares is not None:
            terms = {k: v * shares[k] for k, v in terms.items()}
        w = self.weights
        terms["loss"] = (w["lm"] * terms["lm_loss"] + w["style_hit"] * terms["style_hit_loss"]
                         + w["style_kl"] * terms["style_kl"] + w["style_ce"] * terms["style_ce"])
        return terms

    def train_step(self, model, samples):
        return self.training_terms(model, samples)["loss"]

    def training_terms(self, model, samples):
        parts = self.per_sample_losses(model, samples)
        return self.combine(parts, global_batch_shares(parts))

    # ---- training loop --------------------------------------------------------------------------

    def _autocast(self, cuda_enabled):
        return torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.amp and cuda_enabled)

    def _train_inner_loop(self, epoch, iters_per_epoch, model, data_loader, optimizer, lr_scheduler,
                          scaler=None, start_iters=None, log_freq=50, cuda_enabled=False, accum_grad_iters=1):
        """LAVIS's loop (base_task.py:_train_inner_loop) with every loss part logged, autocast in the
        configured dtype, non-finite steps skipped, optional gradient clipping, and statistics synchronised
        on the model's device (logger.py:43 assumes CUDA). Skipped steps are left out of the averages."""
        if not hasattr(data_loader, "__next__"):
            data_loader = iter(data_loader)
        step = self._optimizer_step(optimizer, scaler)
        skipped_before = step.skipped
        metric_logger = MetricLogger(delimiter="  ")
        metric_logger.add_meter("lr", SmoothedValue(window_size=1, fmt="{value:.6f}"))
        inner_epoch = epoch if start_iters is None else start_iters // iters_per_epoch
        header = f"Train: data epoch: [{epoch}]"
        window, finite = [], None
        for i in metric_logger.log_every(range(iters_per_epoch), log_freq, header):
            samples = prepare_sample(next(data_loader), cuda_enabled=cuda_enabled)
            samples.update({"epoch": inner_epoch, "num_iters_per_epoch": iters_per_epoch, "iters": i})
            lr_scheduler.step(cur_epoch=inner_epoch, cur_step=i)
            with self._autocast(cuda_enabled):
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
                        metric_logger.update(**{k: v.item() for k, v in t.items()})
                    metric_logger.update(grad_norm=grad_norm.item())
                window, finite = [], None
            metric_logger.update(lr=optimizer.param_groups[0]["lr"])
        _synchronise_meters(metric_logger, device="cuda" if cuda_enabled else "cpu")
        logging.info("Averaged stats: " + str(metric_logger.global_avg()))
        stats = {k: "{:.4f}".format(meter.global_avg) for k, meter in metric_logger.meters.items()}
        stats["skipped_steps"] = step.skipped - skipped_before
        self.last_train_stats = {"epoch": epoch, **stats}  # "epoch" lands in log.txt as train_epoch
        return self.last_train_stats

    def _optimizer_step(self, optimizer, scaler):
        """One GuardedOptimizerStep per optimizer, so skips in a row are counted across epochs."""
        if self.optimizer_step is None or self.optimizer_step.optimizer is not optimizer:
            self.optimizer_step = GuardedOptimizerStep(optimizer, scaler, self.max_grad_norm,
                                                       self.max_consecutive_skips)
        return self.optimizer_step

    # ---- evaluation -----------------------------------------------------------------------------

    def before_evaluation(self, model, dataset, **kwargs):
        """Remember what the metrics and the heatmap need from the model: style names, modulation layout."""
        super().before_evaluation(model, dataset, **kwargs)
        core = model.module if hasattr(model, "module") else model
        self.style_names = list(core.vocabulary.names)
        modulation = getattr(core, "kv_modulation", None)
        self.modulation_layout = None if modulation is None else {
            "gating_type": modulation.gating_type,
            "qformer_layers": [i for i, layer in enumerate(core.Qformer.bert.encoder.layer) if layer.has_cross_attention],
        }

    def valid_step(self, model, samples):
        """Per-sample records: the generated answer, the reference, every loss part and, for gated models,
        the modulation strength (cross-attention layer x parameter x head)."""
        parts = self.per_sample_losses(model, samples)
        predictions = model.generate(samples, **self.generation)
        core = model.module if hasattr(model, "module") else model
        strength = core.modulation_strength(samples) if self.modulation_layout else None
        size = len(predictions)
        records = []
        for i in range(size):
            records.append({
                "question_id": str(samples["question_id"][i]),
                "image": samples["image_file"][i],
                "question": samples["text_input"][i],
                "prediction": predictions[i],
                "answer": samples["answer"][i],
                "question_type": samples["question_type"][i],
                "style": samples["style"][i],
                "style_id": int(parts["style_ids"][i]),
                "style_row": bool(parts["style_rows"][i]),
                "style_head_prediction": int(parts["style_head_prediction"][i]),
                "style_hits": int(parts["style_hits"][i]),
                "style_positions": int(parts["style_positions"][i]),
                **{k: float(parts[k][i]) for k in ("lm_loss", "style_hit_loss", "style_kl", "style_ce")},
                **({} if strength is None else {"modulation": strength[i].tolist()}),
            })
        return records

    def evaluation(self, model, data_loader, cuda_enabled=True):
        """Every rank evaluates its share; rank 0 gets all records, once per question_id (runner_gated's
        evaluation sampler never repeats one; LAVIS's DistributedSampler pads with repeats)."""
        records = []
        total = len(data_loader) if hasattr(data_loader, "__len__") else None
        for samples in tqdm(data_loader, total=total, desc="Evaluation (loss + generation)", unit="batch",
                            disable=not is_main_process(), dynamic_ncols=True):
            samples = prepare_sample(samples, cuda_enabled=cuda_enabled)
            with self._autocast(cuda_enabled):
                records.extend(self.valid_step(model=model, samples=samples))
        if is_dist_avail_and_initialized():
            gathered = [None] * get_world_size()
            dist.all_gather_object(gathered, records)
            records = [r for part in gathered for r in part]
        unique = {}
        for r in records:
            unique.setdefault(r["question_id"], r)
        if len(unique) < len(records):
            logging.info("evaluation: %d repeated records (sampler padding) dropped", len(records) - len(unique))
        return [unique[k] for k in sorted(unique)]

    def metrics(self, records):
        """Every reported number from per-sample records (pure; see README for the definitions)."""
        n = len(records)
        style_rows = [r for r in records if r["style_row"]]
        labelled = [r for r in records if r["style_id"] >= 0]
        m = {
            "num_samples": n,
            "num_unknown_style": sum(1 for r in records if r["style"] and r["style_id"] < 0),
            "lm_loss": _mean([r["lm_loss"] for r in records]),
            "style_hit_loss": _mean([r["style_hit_loss"] for r in style_rows]),
            "style_kl": _mean([r["style_kl"] for r in style_rows]),
            "style_ce": _mean([r["style_ce"] for r in labelled]),
            "style_hit_rate": (sum(r["style_hits"] for r in style_rows)
                               / max(1, sum(r["style_positions"] for r in style_rows))),
            "style_word_hit_rate": style_word_hit_rate(records, self.style_names),
            "style_head_acc": _mean([float(r["style_head_prediction"] == r["style_id"]) for r in labelled]),
        }
        w = self.weights
        m["loss"] = (w["lm"] * m["lm_loss"] + w["style_hit"] * m["style_hit_loss"]
                     + w["style_kl"] * m["style_kl"] + w["style_ce"] * m["style_ce"])
        if not w["style_ce"]:
            del m["style_ce"]  # not trained: the style head is random
        m.update(answer_metrics(records))
        m.update(caption_metrics(records))
        m["agg_metrics"] = 1.0 / (1.0 + m["loss"]) if self.select_by == "loss" else m[self.select_by]
        if not records or not math.isfinite(m["agg_metrics"]):
            m["agg_metrics"] = 0.0
        return m

    def after_evaluation(self, val_result, split_name, epoch, **kwargs):
        """Metrics for the split; `<split>_metrics.json`, `<split>_predictions.json` and, for gated models,
        `<split>_modulation.json` in the run folder; every validation's predictions also in result/."""
        m = self.metrics(val_result)
        m["epoch"] = epoch
        if is_main_process():
            output_dir = registry.get_path("output_dir")
            predictions = [{k: v for k, v in r.items() if k != "modulation"} for r in val_result]
            _write_json(os.path.join(registry.get_path("result_dir"), f"{split_name}_epoch{epoch}_predictions.json"),
                        predictions)
            _write_json(os.path.join(output_dir, f"{split_name}_predictions.json"), predictions)
            _write_json(os.path.join(output_dir, f"{split_name}_metrics.json"), m)
            if self.modulation_layout and val_result:
                _write_json(os.path.join(output_dir, f"{split_name}_modulation.json"),
                            summarise_modulation(val_result, **self.modulation_layout))
            logging.info("%s metrics (epoch %s): %s", split_name, epoch, json.dumps(m))
            if isinstance(epoch, int):
                # imported here: `import lavis_gated` loads this module, and a module-level import of the
                # report would make `python -m lavis_gated.report` warn that it was imported twice
                from lavis_gated.report import epoch_summary

                train = self.last_train_stats if (self.last_train_stats or {}).get("epoch") == epoch else None
                logging.info(epoch_summary(epoch, train, split_name, m, self.select_by))
        return m


def global_batch_shares(parts):
    """Per loss term, this rank's share of the global batch's counted rows (tokens for the LM term) times
    the world size; None in a single process.

    A rank-local mean times its share, with DDP averaging the gradients over ranks, gives the gradient of
    the mean over the whole global batch, however unevenly answer tokens or style rows fall on the ranks.
    """
    if not is_dist_avail_and_initialized():
        return None
    counts = torch.stack([parts["lm_tokens"], parts["style_rows"].sum(), (parts["style_ids"] >= 0).sum()]).double()
    totals = counts.clone()
    dist.all_reduce(totals)
    share = (counts * get_world_size() / totals.clamp(min=1)).float()
    return {"lm_loss": share[0], "style_hit_loss": share[1], "style_kl": share[1], "style_ce": share[2]}


def _mean(values):
    return sum(values) / len(values) if values else 0.0


def _synchronise_meters(metric_logger, device):
    """Sum counts and totals of every meter across ranks (on CPU tensors under gloo)."""
    if not is_dist_avail_and_initialized():
        return
    for meter in metric_logger.meters.values():
        t = torch.tensor([meter.count, meter.total], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        meter.count, meter.total = int(t[0].item()), float(t[1].item())


def _write_json(path, obj):
    """Write JSON atomically, so readers never see half a file."""
    with atomic_file(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)


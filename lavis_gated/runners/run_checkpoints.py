"""The runner's checkpoints: written whole (checkpoint_io's atomic writes), read without running code, and
checked by the one key rule (checkpoint_keys), so that a resumed run continues exactly and the test phase
tests the best epoch.

runner_base.py:571-611 writes in place (a crash mid-write destroyed the previous best), unpickles arbitrary
objects, silently loads with strict=False, loads a resume strictly (which fails on LAVIS's own checkpoints:
frozen parameters are not saved) and forgets the best metric.
"""

import logging
import os

from lavis.common.dist_utils import main_process

from lavis_gated.checkpoint_io import load_checkpoint, local_checkpoint_path, save_checkpoint
from lavis_gated.checkpoint_keys import check_state_dict

# model settings that decide which tensors a checkpoint holds: a resume under other values cannot load it
STRUCTURE_KEYS = ("gating", "lora", "prompt_mapper", "num_query_token")


def _flat(block, prefix):
    if isinstance(block, dict):
        return {k: v for key, sub in block.items() for k, v in _flat(sub, f"{prefix}.{key}").items()}
    return {prefix: block}


def settings_differences(saved_model, run_model):
    """[(key, saved value, this run's value)] of STRUCTURE_KEYS that differ between a checkpoint's model
    block and this run's (plain dicts); keys the checkpoint does not record are not compared."""
    saved = {
        k: v
        for key in STRUCTURE_KEYS
        if key in saved_model
        for k, v in _flat(saved_model[key], f"model.{key}").items()
    }
    ours = {k: v for key in STRUCTURE_KEYS for k, v in _flat(run_model.get(key), f"model.{key}").items()}
    return [(key, value, ours.get(key)) for key, value in saved.items() if ours.get(key) != value]


def check_same_model_settings(checkpoint, run_model, path):
    """A ValueError naming each model key to set, when `checkpoint` was trained with other structural
    settings (gating.type, lora, ...) than this run: otherwise the keys' mismatch surfaces as the
    checkpoint "not fitting the model", which names tensors, not settings."""
    saved = ((checkpoint.get("config") or {}).get("model")) or {}
    differences = settings_differences(saved, run_model)
    if differences:
        listed = "; ".join(f"{key} is {value!r} there and {ours!r} here" for key, value, ours in differences)
        options = " ".join(f"{key}={value}" for key, value, _ in differences)
        raise ValueError(
            f"{path} was trained with other model settings than this run: {listed}. Resume it with the "
            f"checkpoint's settings: --options {options}"
        )


def frozen_parameter_names(model):
    """Names of the parameters LAVIS leaves out of checkpoints (remove_duplicate=False also names the
    aliases of tied weights, which state_dict() lists too)."""
    return {n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}


class RunCheckpoints:
    """checkpoint_best.pth / checkpoint_last.pth of a GatedRunner (RunnerBase's method names)."""

    @main_process
    def _save_checkpoint(self, cur_epoch, is_best=False):
        """Write checkpoint_best.pth or checkpoint_last.pth without ever leaving a torn file.

        As in LAVIS, frozen parameters are left out; buffers and extra state (e.g. the style
        vocabulary) are kept. best_agg_metric and best_epoch let a resumed run go on comparing.
        """
        # runner_base.py:591 writes in place: a crash mid-write destroyed the previous best.
        model_no_ddp = self.unwrap_dist_model(self.model)
        frozen = frozen_parameter_names(model_no_ddp)
        state_dict = {k: v for k, v in model_no_ddp.state_dict().items() if k not in frozen}
        save_obj = {
            "model": state_dict,
            "optimizer": self.optimizer.state_dict(),
            "config": self.config.to_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "epoch": cur_epoch,
            "best_agg_metric": self.best_agg_metric,
            "best_epoch": self.best_epoch,
        }
        name = "checkpoint_best.pth" if is_best else "checkpoint_last.pth"
        save_to = os.path.join(self.output_dir, name)
        logging.info(f"Saving checkpoint at epoch {cur_epoch} to {save_to}.")
        save_checkpoint(save_obj, save_to)
        self.resume_point = (save_to, cur_epoch)  # what a stopped run resumes from (runner_gated)

    def _load_model_state(self, model, checkpoint, path):
        """Load checkpoint["model"], accepting only the frozen parameters LAVIS leaves out."""
        frozen = frozen_parameter_names(model)
        report = check_state_dict(
            checkpoint["model"], model.state_dict(), path, "the model", may_miss=frozen.__contains__
        )
        model.load_state_dict(checkpoint["model"], strict=False)
        logging.info(
            "Loaded %d tensors from %s; %d frozen parameters kept from the model.",
            len(report.loaded),
            path,
            len(report.allowed_missing),
        )
        return model

    def _reload_best_model(self, model):
        """Load checkpoint_best.pth into `model` for the test phase."""
        # runner_base.py:600-610 unpickles arbitrary objects, then silently loads with strict=False.
        checkpoint_path = os.path.join(self.output_dir, "checkpoint_best.pth")
        logging.info(f"Loading checkpoint from {checkpoint_path}.")
        checkpoint = load_checkpoint(checkpoint_path)
        self.task.checkpoint_epoch = checkpoint.get("epoch")  # the test metrics name the epoch they test
        return self._load_model_state(model, checkpoint, checkpoint_path)

    def _load_checkpoint(self, url_or_filename):
        """Resume model, optimizer, scaler, epoch and best metric from run.resume_ckpt_path."""
        # runner_base.py:621-628 unpickles arbitrary objects, loads strictly, which fails on LAVIS's
        # own checkpoints (frozen parameters are not saved), and forgets the best metric.
        path = local_checkpoint_path(url_or_filename)
        checkpoint = load_checkpoint(path)
        check_same_model_settings(checkpoint, self.config.to_dict().get("model") or {}, path)
        self._load_model_state(self.unwrap_dist_model(self.model), checkpoint, path)
        self.resume_point = (path, checkpoint["epoch"])

        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scaler and checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.start_epoch = checkpoint["epoch"] + 1
        if "best_agg_metric" in checkpoint:
            self.best_agg_metric = float(checkpoint["best_agg_metric"])
            self.best_epoch = checkpoint["best_epoch"]
        else:
            logging.warning("%s records no best metric: the next validation becomes the best.", path)
        logging.info(
            "Resumed from %s at epoch %s (best agg_metrics %s at epoch %s); writing to %s.",
            url_or_filename,
            self.start_epoch,
            self.best_agg_metric,
            self.best_epoch,
            self.output_dir,
        )

"""LAVIS's epoch runner, made to run on CPU and under gloo, to keep one safe best checkpoint and to
resume exactly.

Only what is broken in RunnerBase (salesforce-lavis 1.0.2) is overridden; each override names the
lines of lavis/runners/runner_base.py it replaces.

Checkpoints in output_dir/<job_id>/ (written atomically, read with weights_only; see common/checkpoints.py):
- checkpoint_best.pth: the model with the highest val agg_metrics so far (its evaluation's files are kept as
  val_best_metrics.json, val_best_predictions.json, val_best_modulation.json);
- checkpoint_last.pth: the latest epoch, written when there is no validation split or when
  run.save_last is true.
Both hold the model's trainable state, optimizer, scaler, epoch and the best metric so far, so that
run.resume_ckpt_path continues the run in their folder as if it had never stopped. Progress lines and
TensorBoard events (output_dir/<job_id>/tensorboard/) come from the monitors below.

The runner's checkpoints: written whole (common/checkpoints.py's atomic writes), read without running code,
and checked by the one key rule (common/checkpoints.py), so that a resumed run continues exactly and the
test phase tests the best epoch.

runner_base.py:571-611 writes in place (a crash mid-write destroyed the previous best), unpickles arbitrary
objects, silently loads with strict=False, loads a resume strictly (which fails on LAVIS's own checkpoints:
frozen parameters are not saved) and forgets the best metric.

What a training run shows while it runs: progress lines (common/progress.py) and TensorBoard events
(tensorboard_log), opened, fed and closed by GatedRunner.train.

Every rank keeps the progress timing (its lines show on rank 0 only, whose logger logs INFO); only rank 0
writes events. run.tensorboard and run.progress_seconds are RunnerConfig's.
"""

import datetime
import logging
import math
import os
import time
from pathlib import Path

import lavis.common.optims  # noqa: F401  (registers the LR schedulers named by run.lr_sched)
import torch
import torch.distributed as dist
from lavis.common.dist_utils import get_rank, is_dist_avail_and_initialized, is_main_process, main_process
from lavis.common.registry import registry
from lavis.runners.runner_base import RunnerBase
from torch.nn.parallel import DistributedDataParallel as DDP

from lavis_gated.common.checkpoints import (
    check_state_dict,
    load_checkpoint,
    local_checkpoint_path,
    save_checkpoint,
)
from lavis_gated.common.progress import TrainingProgress
from lavis_gated.common.run_log import continue_log
from lavis_gated.configs.run_config import runner_config, task_config
from lavis_gated.runners.loaders import LoaderOptions, create_loader
from lavis_gated.runners.run_setup import epoch_seed, seed_everything
from lavis_gated.runners.tensorboard_log import TensorBoardLog
from lavis_gated.tasks.evaluation import keep_best_outputs


def _set_registry_path(name, path):
    """Register or replace a LAVIS path.

    registry.register_path raises KeyError when a second runner registers again (registry.py:200).
    """
    registry.mapping["paths"][name] = str(path)


def frozen_parameter_names(model):
    """Names of the parameters LAVIS leaves out of checkpoints (remove_duplicate=False also names the
    aliases of tied weights, which state_dict() lists too)."""
    return {n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}


@registry.register_runner("runner_gated")
class GatedRunner(RunnerBase):
    """RunnerBase that trains on CPU or GPU, with or without torch.distributed, showing its progress."""

    def __init__(self, cfg, task, model, datasets, job_id):
        super().__init__(cfg, task, model, datasets, job_id)
        # what train() shows while it runs: opened by open_monitors (after a resume sets start_epoch)
        self.tensorboard = TensorBoardLog()  # disabled until open_monitors
        self.progress = None

    @property
    def model(self):
        # runner_base.py:85-97 wraps only a model not yet on the device, so a CPU model gives None.
        if self._wrapped_model is None:
            self._model = self._model.to(self.device)
            if self.use_distributed:
                self._wrapped_model = DDP(
                    self._model,
                    device_ids=[self.config.run_cfg.gpu] if self.cuda_enabled else None,
                    find_unused_parameters=self.settings.find_unused_parameters,
                )
            else:
                self._wrapped_model = self._model
        return self._wrapped_model

    @property
    def scaler(self):
        # runner_base.py:133-137 builds a CUDA GradScaler for any amp run, on CPU and for bf16 too.
        task = task_config(self.config.run_cfg, check=False)
        if task.amp and task.amp_dtype == "float16" and self.cuda_enabled and self._scaler is None:
            self._scaler = torch.amp.GradScaler("cuda")
        return self._scaler

    @property
    def settings(self):
        """The runner's own run keys (RunnerConfig), checked."""
        if getattr(self, "_settings", None) is None:
            self._settings = runner_config(self.config.run_cfg)
        return self._settings

    @property
    def evaluate_only(self):
        # runner_base.py:326 raises with omegaconf >= 2.1 when run.evaluate is absent.
        return bool(self.config.run_cfg.get("evaluate", False))

    @property
    def resumes_in_place(self):
        """True when training resumes from a local checkpoint file: the run goes on in its folder."""
        path = self.resume_ckpt_path
        return not self.evaluate_only and path is not None and os.path.isfile(path)

    def setup_output_dir(self):
        # runner_base.py:343-352 puts output_dir under the lavis package and cannot run twice.
        if self.resumes_in_place:
            # The folder keeps the best checkpoint, whose metric the resumed run must beat to replace it.
            output_dir = Path(os.path.abspath(self.resume_ckpt_path)).parent
        else:
            output_dir = Path(os.path.abspath(os.path.expanduser(self.config.run_cfg.output_dir)))
            output_dir = output_dir / self.job_id
        result_dir = output_dir / "result"
        result_dir.mkdir(parents=True, exist_ok=True)

        _set_registry_path("result_dir", result_dir)
        _set_registry_path("output_dir", output_dir)
        self.result_dir = result_dir
        self.output_dir = output_dir

    def create_loaders(self, datasets, num_workers, batch_sizes, is_trains, collate_fns, dataset_ratios=None):
        """Loaders as in LAVIS, but CUDA prefetching only on CUDA and no sleep between epochs (loaders.py)."""
        # runner_base.py:538 wraps every loader in PrefetchLoader, which needs CUDA.
        options = LoaderOptions(
            seed=int(self.config.run_cfg.get("seed", 0)),
            cuda=self.cuda_enabled,
            distributed=self.use_distributed,
            shard_evaluation=self.use_dist_eval_sampler,
        )
        return [
            create_loader(dataset, bsz, is_train, collate_fn, num_workers, options, dataset_ratios)
            for dataset, bsz, is_train, collate_fn in zip(datasets, batch_sizes, is_trains, collate_fns)
        ]

    def train(self):
        """LAVIS's loop (train_and_test) between opening and closing the progress lines and TensorBoard."""
        start_time = time.time()
        self.best_agg_metric, self.best_epoch = -math.inf, 0
        if not self.evaluate_only and self.resume_ckpt_path is not None:
            self._load_checkpoint(self.resume_ckpt_path)
            self._continue_log()
        else:
            self.log_config()
        self.open_monitors()
        finished = False
        try:
            self.train_and_test()
            finished = True
        finally:
            self.close_monitors(finished)
        total_time_str = str(datetime.timedelta(seconds=int(time.time() - start_time)))
        logging.info(f"Training time {total_time_str}")

    def train_and_test(self):
        """LAVIS's loop, keeping only the best (and optionally the last) checkpoint."""
        # runner_base.py:359 starts best at 0, so a never-positive metric never saves a best, and
        # restarts it on resume, so a worse epoch would replace the best; runner_base.py:399-401
        # writes one checkpoint per epoch; runner_base.py:406 calls dist.barrier() without a
        # process group.
        save_last = not self.valid_splits or self.settings.save_last
        # LAVIS selects on a split named exactly "val" (runner_base.py:390); without one no best
        # checkpoint would ever exist for the test phase to reload.
        select_split = "val" if "val" in self.valid_splits else next(iter(self.valid_splits), None)

        cur_epoch = self.start_epoch - 1
        for cur_epoch in range(self.start_epoch, self.max_epoch):
            if not self.evaluate_only:
                logging.info("Start training")
                train_stats = self.train_epoch(cur_epoch)
                # the epoch in every line, so that a resume can drop exactly the epochs it runs again
                self.log_stats(split_name="train", stats={**train_stats, "epoch": cur_epoch})

            for split_name in self.valid_splits:
                logging.info(f"Evaluating on {split_name}.")
                started = time.monotonic()
                val_log = self.eval_epoch(split_name=split_name, cur_epoch=cur_epoch)
                self.progress.evaluation_took(time.monotonic() - started)
                if val_log is None or not is_main_process():
                    continue
                assert "agg_metrics" in val_log, "No agg_metrics found in validation log."
                agg_metrics = val_log["agg_metrics"]
                if agg_metrics is None or not math.isfinite(float(agg_metrics)):
                    # e.g. a NaN validation loss: blown-up weights must never become the best checkpoint
                    logging.warning(
                        "%s at epoch %s: agg_metrics is not finite (%s); this epoch cannot become "
                        "the best checkpoint",
                        split_name,
                        cur_epoch,
                        agg_metrics,
                    )
                elif split_name == select_split and float(agg_metrics) > self.best_agg_metric:
                    agg_metrics = float(agg_metrics)
                    self.best_epoch, self.best_agg_metric = cur_epoch, agg_metrics
                    if not self.evaluate_only:
                        self._save_checkpoint(cur_epoch, is_best=True)
                        # the metrics, predictions and modulation of the epoch checkpoint_best.pth holds,
                        # findable without log.txt after later epochs replace <split>_metrics.json
                        keep_best_outputs(self.output_dir, split_name)
                val_log.update({"best_epoch": self.best_epoch})
                val_log.setdefault("epoch", cur_epoch)
                self.log_stats(val_log, split_name)
                self.evaluated(split_name, cur_epoch, val_log)

            if self.evaluate_only:
                break
            if save_last:
                self._save_checkpoint(cur_epoch, is_best=False)
            if is_dist_avail_and_initialized():
                dist.barrier()

        if select_split is not None and self.best_epoch_missing():
            last = "; checkpoint_last.pth holds the last epoch" if save_last else ""
            raise RuntimeError(
                f"No validation of this run on {select_split!r} had a finite agg_metrics, so no "
                f"checkpoint_best.pth was written and there is nothing to test: the training diverged "
                f"(lower run.init_lr, set run.max_grad_norm){last}."
            )
        # Without a validation split the current model is the one to test.
        test_epoch = "best" if self.valid_splits else cur_epoch
        test_logs = self.evaluate(cur_epoch=test_epoch, skip_reload=self.evaluate_only) or {}
        if is_main_process():
            for split_name, test_log in test_logs.items():
                self.evaluated(split_name, test_epoch, test_log)

    def best_epoch_missing(self):
        """True when training ran but no epoch became the best (every validation was non-finite)."""
        return (
            not self.evaluate_only
            and self.max_epoch > self.start_epoch
            and self.best_agg_metric == -math.inf
            and not os.path.isfile(os.path.join(self.output_dir, "checkpoint_best.pth"))
        )

    @main_process
    def _continue_log(self):
        """A resumed run's log.txt: the config once, the epochs before the resumed one, and a note."""
        path = os.path.join(self.output_dir, "log.txt")
        note = {"resumed_from": str(self.resume_ckpt_path), "resumed_at_epoch": self.start_epoch}
        if os.path.isfile(path):
            continue_log(path, self.start_epoch, note)
        else:
            self.log_config()

    def train_epoch(self, epoch):
        """One epoch whose random numbers and batch order depend only on run.seed, epoch and rank."""
        seed_everything(epoch_seed(int(self.config.run_cfg.get("seed", 0)), epoch, get_rank()))
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(epoch)
        return super().train_epoch(epoch)

    @torch.no_grad()
    def eval_epoch(self, split_name, cur_epoch, skip_reload=False):
        """Evaluate one split; cur_epoch "best" reloads checkpoint_best.pth unless skip_reload."""
        # runner_base.py:469 omits cuda_enabled, so the task moves every batch to CUDA.
        data_loader = self.dataloaders.get(split_name, None)
        # not `assert data_loader`: a rank can have no evaluation batch, and an empty loader is falsy
        assert data_loader is not None, f"data_loader for split {split_name} is None."

        model = self.unwrap_dist_model(self.model)
        if not skip_reload and cur_epoch == "best":
            model = self._reload_best_model(model)
        model.eval()

        self.task.before_evaluation(model=model, dataset=self.datasets[split_name])
        results = self.task.evaluation(model, data_loader, cuda_enabled=self.cuda_enabled)
        if results is not None:
            return self.task.after_evaluation(val_result=results, split_name=split_name, epoch=cur_epoch)

    # ---- checkpoint_best.pth / checkpoint_last.pth (RunnerBase's method names) ------------------------

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
        self._load_model_state(self.unwrap_dist_model(self.model), checkpoint, path)

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

    # ---- progress lines and TensorBoard events ----------------------------------------------------------

    def open_monitors(self):
        """Progress and TensorBoard for train(); call after a resume has set start_epoch."""
        steps = self.steps_per_epoch()
        log_dir = os.path.join(self.output_dir, "tensorboard")
        on = self.settings.tensorboard and is_main_process()
        # a resumed run trains its restart epoch again: hide the first attempt's events from that epoch's
        # first step on (the validation before it, at start_epoch * steps, stays)
        purge = self.start_epoch * steps + 1 if on and self.start_epoch > 0 and steps else None
        self.tensorboard = TensorBoardLog(log_dir if on else None, purge_step=purge)
        self.progress = TrainingProgress(
            max_epoch=self.max_epoch,
            log_freq=self.log_freq,
            every_seconds=self.settings.progress_seconds,
            evaluations_per_epoch=len(self.valid_splits),
            final_evaluations=len(self.test_splits),
            on_report=self.tensorboard.train_step,
        )
        self.task.progress = self.progress

    def steps_per_epoch(self):
        """Training steps per epoch (0 when evaluating only, or for a loader without a length)."""
        if self.evaluate_only:
            return 0
        try:
            return len(self.train_loader)
        except TypeError:
            return 0

    def event_step(self, epoch):
        """TensorBoard step of an evaluation after `epoch`: the step that ends it ("best": the run's last)."""
        steps = self.progress.steps_per_epoch or self.steps_per_epoch()
        return (self.max_epoch if not isinstance(epoch, int) else epoch + 1) * steps

    def evaluated(self, split, epoch, metrics):
        """Rank 0, after an evaluation pass: its metrics and the modulation it wrote, as events."""
        step = self.event_step(epoch)
        self.tensorboard.evaluation(split, step, metrics)
        self.tensorboard.modulation(split, step, os.path.join(self.output_dir, f"{split}_modulation.json"))
        self.tensorboard.flush()

    def close_monitors(self, finished):
        """Pictures when the run finished; then the event file closed (also on an error)."""
        try:
            if finished:
                self.tensorboard.pictures(str(self.output_dir), self.event_step("best"))
        finally:
            self.tensorboard.close()
            self.task.progress = None

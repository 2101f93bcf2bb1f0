"""What a training run shows while it runs: progress lines (training_progress) and TensorBoard events
(tensorboard_log), opened, fed and closed by GatedRunner.train through this mixin.

Every rank keeps the progress timing (its lines show on rank 0 only, whose logger logs INFO); only rank 0
writes events. run.tensorboard and run.progress_seconds are RunnerConfig's.
"""

import os

from lavis.common.dist_utils import is_main_process

from lavis_gated.runners.tensorboard_log import TensorBoardLog
from lavis_gated.runners.training_progress import TrainingProgress


class RunMonitoring:
    """Mixin of GatedRunner (a LAVIS RunnerBase): uses its settings, task, output_dir and loaders."""

    tensorboard = TensorBoardLog()  # disabled until open_monitors
    progress = None

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

"""Training progress as log lines: epoch x/N, the step, the loss parts since the last line, and the time
left in the epoch and in the run.

LAVIS prints every run.log_freq (50) steps, which on a 37-step demo epoch meant two lines per epoch and
minutes of silence on a busy machine. A line is written at the first and last step of an epoch, each tenth
of an epoch, every run.log_freq steps and whenever run.progress_seconds passed since the last line. The
same moments feed TensorBoard (`on_report`), so its curves have one point per line.
"""

import datetime
import logging
import time

# (key, short name) of what a line shows, in order; the loss parts as in report.py's epoch summary
SHOWN = (
    ("loss", "loss"),
    ("lm_loss", "lm"),
    ("style_name_loss", "name"),
    ("style_kl", "kl"),
    ("style_ce", "ce"),
    ("grad_norm", "grad_norm"),
    ("lr", "lr"),
)
FRACTIONS = 10  # a line each tenth of an epoch


def _mean(values):
    return sum(values) / len(values) if values else None


def duration(seconds):
    return str(datetime.timedelta(seconds=int(round(max(0.0, seconds)))))


class TrainingProgress:
    """Decides when a training step is reported and writes the line; knows the run's remaining work.

    max_epoch None: a loop run outside the runner (no run ETA). evaluations_per_epoch and final_evaluations:
    the evaluation passes after each epoch and at the end. The run ETA adds to the training steps left what
    happened between an epoch's last step and the next epoch's first (validation, checkpoint, logs), as
    measured; before a whole epoch was seen, the evaluation passes at their measured time.
    """

    def __init__(
        self,
        max_epoch=None,
        log_freq=50,
        every_seconds=30.0,
        evaluations_per_epoch=0,
        final_evaluations=0,
        on_report=None,
        clock=time.monotonic,
    ):
        self.max_epoch, self.log_freq, self.every_seconds = max_epoch, log_freq, every_seconds
        self.evaluations_per_epoch, self.final_evaluations = evaluations_per_epoch, final_evaluations
        self.on_report, self.clock = on_report, clock
        self.evaluation_seconds = []  # one per evaluation pass measured so far
        self.between_epochs = []  # seconds from an epoch's last step to the next epoch's first
        self.epoch, self.steps_per_epoch, self.epoch_start, self.last_line = 0, 0, clock(), clock()
        self.trained_until = None
        self.sums, self.counts = {}, {}

    def epoch_started(self, epoch, steps):
        self.epoch, self.steps_per_epoch = epoch, steps
        self.epoch_start = self.last_line = self.clock()
        if self.trained_until is not None:
            self.between_epochs.append(self.epoch_start - self.trained_until)
        self.sums, self.counts = {}, {}

    def record(self, values):
        """Add one update of named floats (a step's loss parts, its gradient norm, the learning rate)."""
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
            self.counts[key] = self.counts.get(key, 0) + 1

    def evaluation_took(self, seconds):
        self.evaluation_seconds.append(float(seconds))

    def is_due(self, i, now):
        steps = self.steps_per_epoch
        return (
            i == 0
            or i == steps - 1
            or (self.log_freq > 0 and i % self.log_freq == 0)
            or (FRACTIONS * (i + 1)) // steps > (FRACTIONS * i) // steps
            or now - self.last_line >= self.every_seconds
        )

    def step_done(self, i, skipped=0):
        """After step i (0-based) of the epoch: when due, write the line with the means since the last one and
        hand them to on_report at the run's global step; returns the line, or None."""
        now = self.clock()
        if not self.is_due(i, now):
            return None
        means = {k: self.sums[k] / self.counts[k] for k in self.sums}
        line = self.line(i, now, means, skipped)
        logging.info(line)
        if self.on_report is not None:
            self.on_report(self.global_step(i), {**means, "skipped_steps": skipped})
        self.sums, self.counts, self.last_line = {}, {}, now
        return line

    def global_step(self, i):
        """Training steps done after step i of the epoch, counted from the run's first epoch: the x axis of
        TensorBoard (the validation after epoch e sits at (e + 1) * steps, with that epoch's last step)."""
        return self.epoch * self.steps_per_epoch + i + 1

    def remaining(self, i, now):
        """(seconds left in the epoch, in the run (None: unknown), whether evaluation time is unknown)."""
        per_step = (now - self.epoch_start) / (i + 1)
        epoch_left = per_step * (self.steps_per_epoch - i - 1)
        if self.max_epoch is None:
            return epoch_left, None, False
        later_epochs = max(0, self.max_epoch - self.epoch - 1)
        evaluation = _mean(self.evaluation_seconds)
        between = _mean(self.between_epochs)
        if between is None and evaluation is not None:
            between = self.evaluations_per_epoch * evaluation
        final = self.final_evaluations * evaluation if evaluation is not None else None
        unknown = (between is None and self.evaluations_per_epoch > 0) or (
            final is None and self.final_evaluations > 0
        )
        run_left = (
            epoch_left
            + later_epochs * self.steps_per_epoch * per_step
            + (later_epochs + 1) * (between or 0.0)
            + (final or 0.0)
        )
        return epoch_left, run_left, unknown

    def line(self, i, now, means, skipped):
        steps = self.steps_per_epoch
        epoch = f"epoch {self.epoch + 1}/{self.max_epoch}" if self.max_epoch else f"epoch {self.epoch + 1}"
        parts = [epoch, f"step {i + 1}/{steps} ({100 * (i + 1) // steps}%)"]
        parts += [
            f"{short} {means[key]:.4g}" if key in ("lr", "grad_norm") else f"{short} {means[key]:.4f}"
            for key, short in SHOWN
            if key in means
        ]
        if skipped:
            parts.append(f"skipped steps {skipped}")
        per_step = (now - self.epoch_start) / (i + 1)
        epoch_left, run_left, unknown = self.remaining(i, now)
        parts.append(f"{per_step:.2f} s/step")
        parts.append(f"epoch ETA {duration(epoch_left)}")
        if run_left is not None:
            parts.append(f"run ETA {duration(run_left)}" + (" + evaluation" if unknown else ""))
        return "  ".join(parts)

    def epoch_ended(self):
        self.trained_until = self.clock()
        took = self.trained_until - self.epoch_start
        logging.info(
            "epoch %s trained in %s (%.2f s/step)",
            f"{self.epoch + 1}/{self.max_epoch}" if self.max_epoch else self.epoch + 1,
            duration(took),
            took / max(1, self.steps_per_epoch),
        )

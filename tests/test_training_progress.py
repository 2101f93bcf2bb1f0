"""TrainingProgress: which steps get a line, what the line says, and the ETAs, on a clock the test moves."""

import logging

import pytest

from lavis_gated.common.progress import TrainingProgress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def run_epoch(progress, clock, epoch, steps, seconds_per_step=2.0, values=None):
    """Feed `steps` steps of `seconds_per_step` each; returns {step index: line} of the steps that got one."""
    lines = {}
    progress.epoch_started(epoch, steps)
    for i in range(steps):
        clock.now += seconds_per_step
        progress.record(values or {"loss": 1.0 + i, "lm_loss": 0.5, "lr": 1e-3})
        line = progress.step_done(i)
        if line is not None:
            lines[i] = line
    return lines


def test_a_line_each_tenth_of_an_epoch_and_at_its_ends():
    clock = Clock()
    progress = TrainingProgress(max_epoch=20, log_freq=50, every_seconds=1e9, clock=clock)
    lines = run_epoch(progress, clock, epoch=0, steps=37)
    # the first step, then where (i + 1) / 37 crosses each tenth: steps 4, 8, 12, 15, 19, 23, 26, 30, 34, 37
    assert sorted(lines) == [0, 3, 7, 11, 14, 18, 22, 25, 29, 33, 36]


def test_log_freq_and_seconds_add_lines():
    clock = Clock()
    progress = TrainingProgress(max_epoch=1, log_freq=7, every_seconds=1e9, clock=clock)
    lines = run_epoch(progress, clock, epoch=0, steps=1000)
    assert {0, 7, 14, 99, 105, 199, 999} <= set(lines) and 1 not in lines and 100 not in lines

    progress = TrainingProgress(max_epoch=1, log_freq=0, every_seconds=10.0, clock=clock)
    lines = run_epoch(progress, clock, epoch=0, steps=1000, seconds_per_step=2.0)
    assert sorted(lines)[:4] == [0, 5, 10, 15]  # every 10 s at 2 s per step, between the tenths


def test_the_line_and_its_etas():
    clock = Clock()
    progress = TrainingProgress(
        max_epoch=4, evaluations_per_epoch=1, final_evaluations=1, every_seconds=1e9, clock=clock
    )
    progress.evaluation_took(30.0)
    lines = run_epoch(progress, clock, epoch=1, steps=10, seconds_per_step=2.0)
    # step 5 of 10 in epoch 2/4 at 2 s/step: 10 s left in the epoch; 2 later epochs of 20 s; evaluations after
    # epochs 2, 3 and 4 plus the test phase at 30 s each
    line = lines[4]
    assert line.startswith("epoch 2/4  step 5/10 (50%)  loss 5.0000  lm 0.5000  lr 0.001  2.00 s/step")
    assert line.endswith("epoch ETA 0:00:10  run ETA 0:02:50")  # 10 + 2 * 20 + 4 * 30 = 170 s
    assert "loss 10.0000" in lines[9] and "epoch ETA 0:00:00" in lines[9]


def test_the_run_eta_counts_what_came_between_epochs():
    clock = Clock()
    progress = TrainingProgress(
        max_epoch=3, evaluations_per_epoch=1, final_evaluations=1, every_seconds=1e9, clock=clock
    )
    run_epoch(progress, clock, epoch=0, steps=10, seconds_per_step=2.0)
    progress.epoch_ended()
    clock.now += 30.0  # validation (measured: 20 s), checkpoint and logs
    progress.evaluation_took(20.0)
    lines = run_epoch(progress, clock, epoch=1, steps=10, seconds_per_step=2.0)
    # 10 s left in epoch 2, 20 s of epoch 3, 30 s after each of them, and the test phase at 20 s
    assert lines[4].endswith("epoch ETA 0:00:10  run ETA 0:01:50")


def test_means_since_the_last_line_go_to_on_report_at_the_global_step():
    clock = Clock()
    reported = []
    progress = TrainingProgress(
        max_epoch=2,
        every_seconds=1e9,
        log_freq=0,
        clock=clock,
        on_report=lambda step, values: reported.append((step, values)),
    )
    run_epoch(progress, clock, epoch=1, steps=20)
    steps = [s for s, _ in reported]
    assert steps == [21, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40]  # steps done: epoch 1 starts after 20
    step, values = reported[2]  # steps 2 and 3 of the epoch: losses 3 and 4
    assert values == {"loss": 3.5, "lm_loss": 0.5, "lr": pytest.approx(1e-3), "skipped_steps": 0}


def test_unknown_evaluation_time_and_no_run_eta_outside_a_runner(caplog):
    clock = Clock()
    progress = TrainingProgress(max_epoch=3, evaluations_per_epoch=1, every_seconds=1e9, clock=clock)
    assert run_epoch(progress, clock, 0, 4)[0].endswith("run ETA 0:00:22 + evaluation")  # 6 + 2 * 8 s
    alone = TrainingProgress(clock=clock)
    with caplog.at_level(logging.INFO):
        line = run_epoch(alone, clock, 5, 4)[0]
        alone.epoch_ended()
    assert line.startswith("epoch 6  step 1/4") and "run ETA" not in line and line in caplog.text
    assert "epoch 6 trained in 0:00:08 (2.00 s/step)" in caplog.text


def test_skipped_steps_are_shown():
    clock = Clock()
    progress = TrainingProgress(max_epoch=1, clock=clock)
    progress.epoch_started(0, 3)
    clock.now += 1
    progress.record({"lr": 0.1})
    assert "skipped steps 2" in progress.step_done(0, skipped=2)

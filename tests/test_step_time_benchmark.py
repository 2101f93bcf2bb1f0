"""benchmarks/step_time.py at the tiny size: the JSON lines it documents, with values that make sense (no
timing is asserted: timings are measured by the benchmark, never by tests)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.runs import SUBPROCESS_TIMEOUT

REPO = Path(__file__).resolve().parent.parent


def benchmark(*args, **env_overrides):
    env = dict(os.environ, PYTHONWARNINGS="ignore", **env_overrides)
    result = subprocess.run(
        [sys.executable, "benchmarks/step_time.py", "--size", "tiny", "--threads", "1", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_steps_report_each_model_against_lavis_blip2opt():
    lines = benchmark("--batch-size", "2", "--rounds", "2", "--warmup", "1", "--share-steps", "1", "--fast")
    models = {line["model"]: line for line in lines}
    assert list(models) == ["blip2_opt", "blip2_opt_gated", "blip2_opt_gated_fast"]
    baseline, gated, fast = models.values()
    for line in lines:
        assert line["ms_per_step"] > 0 and line["samples_per_s"] == pytest.approx(
            2000 / line["ms_per_step"], rel=0.01
        )
        assert line["steps"] == 2 and line["peak_memory_bytes"] > 0 and line["device"] == "cpu"
    assert (
        gated["total_params"] > baseline["total_params"]
        and gated["trainable_params"] > baseline["trainable_params"]
    )
    assert fast["total_params"] == gated["total_params"]
    assert baseline["shares"]["vit"] > 0 and gated["shares"]["style_cnn"] > 0
    assert fast["shares"]["vit"] == 0 and fast["shares"]["style_cnn"] == 0, (
        "cached features skip the frozen encoders"
    )
    for line in (gated, fast):
        ratio = line["ratio_to_baseline"]
        assert ratio["step_time_quartiles"][0] <= ratio["step_time_median"] <= ratio["step_time_quartiles"][1]
        assert ratio["peak_memory"] == pytest.approx(
            line["peak_memory_bytes"] / baseline["peak_memory_bytes"], rel=1e-3
        )
    assert fast["eval_loss_abs_diff_vs_plain"] <= 1e-5


def test_epochs_with_the_cache_compute_the_uncached_losses():
    (line,) = benchmark("--batch-size", "4", "--epochs", "2", "--images-per-style", "1")
    assert line["images"] == 6 and line["samples_per_epoch"] == 12 and line["steps"] == 2 * 3
    assert len(line["epoch_s"]["cached"]) == len(line["epoch_s"]["uncached"]) == 2
    assert line["max_abs_loss_diff_same_weights"] <= 1e-5


def test_a_failed_compile_costs_only_the_compiled_models_line(tmp_path):
    """The GPU rows compile last in one process: a compiler that fails (here: no working C++ compiler for
    Inductor) gives an error line for that model, and every other model is still measured and reported."""
    lines = benchmark(
        "--batch-size",
        "2",
        "--rounds",
        "1",
        "--warmup",
        "1",
        "--share-steps",
        "1",
        "--fast",
        "--compile",
        "default",
        CXX="/bin/false",
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path),
    )
    errors = [line for line in lines if "error" in line]
    assert [line["model"] for line in errors] == ["blip2_opt_gated_fast_compiled_default"]
    assert "Compiler" in errors[0]["error"] or "compiler" in errors[0]["error"]
    measured = [line["model"] for line in lines if "ms_per_step" in line]
    assert measured == ["blip2_opt", "blip2_opt_gated", "blip2_opt_gated_fast"]

"""The console commands a fresh install provides, and that the ones reading a run's files start light."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
COMMANDS = (
    "lavis-gated-train",
    "lavis-gated-eval",
    "lavis-gated-report",
    "lavis-gated-compare",
    "lavis-gated-plots",
    "lavis-gated-make-demo-data",
    "lavis-gated-make-shards",
    "lavis-gated-train-style-cnn",
    "lavis-gated-style-table",
    "lavis-gated-ablate",
    "lavis-gated-app",
    "lavis-gated-predict",
)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_is_installed_and_answers_help(command):
    result = subprocess.run([str(BIN / command), "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage:" in result.stdout


def imported_modules(command, *args, cwd=None):
    """Top-level modules a command (or a ["python", "-m", module] list) imported (PYTHONPROFILEIMPORTTIME
    lists every import on stderr)."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    command = command if isinstance(command, list) else [str(BIN / command)]
    result = subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [
        line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    ]
    return {name.split(".")[0] for name in lines}, result.stdout


def test_file_reading_commands_import_neither_lavis_nor_torch(tmp_path):
    metrics = {"num_samples": 4, "loss": 1.5, "em": 0.5, "agg_metrics": 0.4}
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "test_metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "cfg.yaml").write_text("run: {}\n")
    (tmp_path / "variants.yaml").write_text("variants: {none: [model.gating.type=none]}\n")
    ablate = [
        "--cfg",
        tmp_path / "cfg.yaml",
        "--variants",
        tmp_path / "variants.yaml",
        "--report-only",
        "--out",
        tmp_path / "ablation",
    ]
    for command, args in (
        ("lavis-gated-report", [tmp_path / "a" / "test_metrics.json"]),
        ("lavis-gated-compare", [tmp_path / "a", tmp_path / "b"]),
        ("lavis-gated-plots", [tmp_path / "a"]),
        ("lavis-gated-ablate", ablate),
        ([sys.executable, "-m", "lavis_gated.ablation.harness"], ablate),
        (
            [sys.executable, "-X", "utf8", "-m", "lavis_gated.reports.tables"],
            [tmp_path / "a" / "test_metrics.json"],
        ),
    ):
        modules, stdout = imported_modules(command, *args)
        assert "lavis_gated" in modules and not {"lavis", "torch"} & modules, (command, sorted(modules))
    assert (tmp_path / "ablation" / "ablation.json").is_file()
    assert "0.5000" in imported_modules("lavis-gated-report", tmp_path / "a" / "test_metrics.json")[1]


def test_the_package_still_registers_with_lavis_on_import():
    code = (
        "import lavis_gated; from lavis.common.registry import registry; "
        "print(registry.get_model_class('blip2_opt_gated').__name__, "
        "registry.get_task_class('style_captioning').__name__, "
        "registry.get_builder_class('artquest').__name__, registry.get_runner_class('runner_gated').__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["Blip2OPTGated", "StyleCaptioningTask", "ArtQuestBuilder", "GatedRunner"]

"""The console commands a fresh install provides: each answers --help at once (neither LAVIS nor torch
imported) with a purpose, an example and a docs page; they share one vocabulary of flags; the ones reading a
run's files start light; the package still registers with LAVIS on a plain import."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lavis_gated.common.command_line import FLAGS, RETIRED, run_options

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
        "--cfg-path",
        tmp_path / "cfg.yaml",
        "--variants",
        tmp_path / "variants.yaml",
        "--report-only",
        "--output-dir",
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


REPO = Path(__file__).resolve().parent.parent
# the shared flags (common/command_line.FLAGS) each command takes
SHARED_FLAGS = {
    "lavis-gated-train": ["--cfg-path", "--options", "--output-dir", "--device", "--num-threads"],
    "lavis-gated-eval": [
        "--checkpoint",
        "--cfg-path",
        "--split",
        "--options",
        "--output-dir",
        "--device",
        "--num-threads",
        "--max-len",
        "--num-beams",
    ],
    "lavis-gated-report": [],
    "lavis-gated-compare": ["--split"],
    "lavis-gated-plots": [],
    "lavis-gated-ablate": ["--cfg-path", "--output-dir", "--nproc", "--split", "--options"],
    "lavis-gated-app": ["--checkpoint", "--device", "--num-threads"],
    "lavis-gated-predict": [
        "--checkpoint",
        "--device",
        "--num-threads",
        "--max-len",
        "--num-beams",
        "--batch-size",
    ],
    "lavis-gated-make-demo-data": ["--output-dir", "--num-threads"],
    "lavis-gated-make-shards": ["--cfg-path", "--output-dir", "--num-threads"],
    "lavis-gated-train-style-cnn": [
        "--output-dir",
        "--device",
        "--num-threads",
        "--batch-size",
        "--num-workers",
    ],
    "lavis-gated-style-table": ["--num-threads", "--checkpoint", "--batch-size", "--device", "--num-workers"],
}


def entry_point(command):
    """[python, -c, ...] running the command's pyproject.toml entry point as its console script does (its
    name as sys.argv[0]), whatever scripts the environment has installed."""
    block = (REPO / "pyproject.toml").read_text().split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    target = dict(
        (line.split("=")[0].strip(), line.split('"')[1]) for line in block.splitlines() if "=" in line
    )[command]
    module, function = target.split(":")
    code = f"import sys; sys.argv[0] = {command!r}; from {module} import {function}; sys.exit({function}())"
    return [sys.executable, "-c", code]


def help_of(command):
    return imported_modules(entry_point(command), "--help")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_light_and_gives_purpose_example_docs_and_the_shared_flags(command):
    modules, text = help_of(command)
    heavy = {"lavis", "torch", "matplotlib", "timm", "transformers"} & modules
    assert not heavy, f"{command} --help imported {sorted(heavy)}"
    usage, purpose = text.split("\n\n")[:2]
    assert (
        usage.startswith(f"usage: {command}") and len(purpose.strip()) > 30 and purpose.rstrip().endswith(".")
    )
    example = text.split("example:\n", 1)[1].splitlines()[0].strip()
    assert example.startswith(command + " ")
    page = text.split("docs: ", 1)[1].split()[0]
    assert (REPO / page).is_file(), page
    for flag in SHARED_FLAGS[command]:
        assert f"  {flag} " in text or f"  {flag}\n" in text or f", {flag}" in text, (command, flag)
    for retired in RETIRED:
        assert f"{retired} " not in text and f"{retired}\n" not in text, (command, retired)
    assert "Warning" not in text


def test_the_shared_flags_table_covers_every_shared_flag():
    used = {flag for flags in SHARED_FLAGS.values() for flag in flags}
    assert used == {f"--{name}" for name in FLAGS}


def test_run_flags_of_train_and_eval_are_their_run_config_keys():
    from lavis_gated import evaluate, train

    args = train.parse_args(
        [
            "--cfg-path",
            "x.yaml",
            "--output-dir",
            "out",
            "--device",
            "cpu",
            "--num-threads",
            "2",
            "--options",
            "a=1",
        ]
    )
    assert args.options == ["a=1", "run.output_dir=out", "run.device=cpu", "run.num_threads=2"]
    args = evaluate.parse_args(
        ["--cfg-path", "x.yaml", "--max-len", "12", "--num-beams", "3", "--split", "val"]
    )
    assert args.options == ["run.test_splits=[val]", "run.max_len=12", "run.num_beams=3"]
    assert run_options(train.parse_args(["--cfg-path", "x.yaml"])) == []


def test_eval_needs_a_checkpoint_or_a_config(capsys):
    from lavis_gated import evaluate

    with pytest.raises(SystemExit):
        evaluate.parse_args([])
    assert "give --checkpoint" in capsys.readouterr().err

"""lavis-gated-ablate end to end at toy size: 2 variants x 2 seeds of one epoch on a few synthetic images,
stopped (SIGKILL) during its second run and started again; then its outputs against the run folders.

Each run is a real training subprocess (about 10 s here); the variants file parsing and the launch command
are checked without training.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import pytest
import yaml
from helpers.runs import REPO, SUBPROCESS_TIMEOUT, write_config

from lavis_gated.ablation import harness as ablate
from lavis_gated.ablation.stats import t_interval
from lavis_gated.common.run_log import logged_config, read_log
from lavis_gated.datasets.synthetic_artquest import generate
from lavis_gated.reports.tables import numeric_metrics
from lavis_gated.tasks.metrics import normalise_exact

BIN = Path(sys.executable).parent
VARIANTS = {
    "none": ["model.gating.type=none"],
    "gate": ["model.gating.type=gate", "model.gating.per_head=false"],
}
SEEDS = 2


def harness(root, *extra, out="out"):
    return [
        str(BIN / "lavis-gated-ablate"),
        "--cfg-path",
        str(root / "base.yaml"),
        "--variants",
        str(root / "variants.yaml"),
        "--seeds",
        str(SEEDS),
        "--output-dir",
        str(root / out),
        *extra,
    ]


def metrics_files(out, variant, seed):
    return sorted((out / "runs" / variant / f"seed{seed}").glob("*/test_metrics.json"))


def wait_for(condition, process, what):
    """Poll until `condition()`; a hang guard, not a speed check."""
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    while not condition():
        assert process.poll() is None, f"the harness ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {SUBPROCESS_TIMEOUT} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    """(root, out, stdout of the resumed harness): the harness killed in its second run, then run again."""
    root = tmp_path_factory.mktemp("ablation")
    generate(str(root / "data"), {"train": 2, "val": 1, "test": 1}, seed=4)
    write_config(
        root, root / "data", "base", max_epoch=1, warmup_steps=1, batch_size_train=8, batch_size_eval=12
    )
    (root / "variants.yaml").write_text(yaml.safe_dump({"variants": VARIANTS}, sort_keys=False))
    out = root / "out"
    env = dict(os.environ, PYTHONWARNINGS="ignore")

    with open(root / "first.log", "w") as log:
        first = subprocess.Popen(
            harness(root), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            # the first run (none, seed 0) finished and the second (gate, seed 0) started: stop everything
            wait_for(
                lambda: (
                    metrics_files(out, "none", 0) and (out / "runs/gate/seed0/ablation_run.json").exists()
                ),
                first,
                "second run",
            )
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=60)
    assert not metrics_files(out, "gate", 0) and not (out / "ablation.json").exists()
    finished_first = metrics_files(out, "none", 0)[0]
    stamp = finished_first.stat().st_mtime_ns

    resumed = subprocess.run(
        harness(root), cwd=REPO, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-5000:]
    assert metrics_files(out, "none", 0) == [finished_first] and finished_first.stat().st_mtime_ns == stamp
    return root, out, resumed.stdout + resumed.stderr


def test_a_stopped_ablation_resumes_and_skips_finished_runs(ablation):
    root, out, output = ablation
    assert "[1/4] none seed 0: finished before, skipped" in output
    assert "gate seed 0: clearing the unfinished run" in output
    assert output.count(": training in ") == 3
    for variant in VARIANTS:
        for seed in range(SEEDS):
            assert len(metrics_files(out, variant, seed)) == 1, (variant, seed)  # one run folder each
            config = logged_config(read_log(metrics_files(out, variant, seed)[0].parent / "log.txt"))
            assert config["run"]["seed"] == seed
            assert config["run"]["output_dir"] == str(out / "runs" / variant / f"seed{seed}")
            assert config["model"]["gating"]["type"] == VARIANTS[variant][0].split("=")[1]
    # the runs' own progress lines came through, without LAVIS's config dump
    assert "epoch 1/1  step 3/3 (100%)" in output and "run ETA" in output
    assert "Running Parameters" not in output

    again = subprocess.run(
        harness(root), cwd=REPO, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("finished before, skipped") == 4 and "training in" not in again.stderr


def answered_right(out, variant, seed):
    """{question_id: whether the prediction matches the answer}, read from the run's predictions file."""
    run_dir = metrics_files(out, variant, seed)[0].parent
    predictions = json.loads((run_dir / "test_predictions.json").read_text())
    return {
        p["question_id"]: normalise_exact(p["prediction"]) == normalise_exact(p["answer"])
        for p in predictions
    }


def test_the_json_holds_the_run_folders_numbers(ablation):
    root, out, _ = ablation
    report = json.loads((out / "ablation.json").read_text())
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert report["commit"] == (commit.stdout.strip() if commit.returncode == 0 else "unknown")
    assert report["missing"] == [] and report["reference"] == "none" and report["split"] == "test"
    assert len(report["runs"]) == 4

    for variant, options in VARIANTS.items():
        entry = report["variants"][variant]
        assert entry["options"] == options and entry["seeds"] == [0, 1]
        per_seed = [
            numeric_metrics(json.loads(metrics_files(out, variant, s)[0].read_text())) for s in range(SEEDS)
        ]
        for run in (r for r in report["runs"] if r["variant"] == variant):
            assert run["metrics"] == per_seed[run["seed"]]
            assert (out / run["run_dir"] / "test_metrics.json") == metrics_files(out, variant, run["seed"])[0]
            assert len(run["config_sha256"]) == 64
        assert set(entry["metrics"]) == set(per_seed[0])
        for name in ("lm_loss", "em", "em[style]", "style_head_acc", "probe_style_acc"):
            expected = t_interval([m[name] for m in per_seed])
            assert entry["metrics"][name] == pytest.approx(expected, rel=1e-12, abs=1e-15), name
        assert len(entry["config_sha256_except_seed"]) == 1

    # the paired counts, recomputed from the predictions files
    counts = {"both": 0, "variant_only": 0, "reference_only": 0, "neither": 0}
    names = {(True, True): "both", (True, False): "variant_only", (False, True): "reference_only"}
    for seed in range(SEEDS):
        gate, none = answered_right(out, "gate", seed), answered_right(out, "none", seed)
        for qid in gate:
            counts[names.get((gate[qid], none[qid]), "neither")] += 1
    paired = report["variants"]["gate"]["paired"]
    assert {k: paired[k] for k in counts} == counts and paired["pairs"] == 2 * 12
    differences = [s["difference"] for s in paired["per_seed"]]
    assert paired["mean_difference"] == pytest.approx(sum(differences) / SEEDS)
    assert paired["ci_low"] <= paired["mean_difference"] <= paired["ci_high"]


def test_the_markdown_and_the_chart(ablation):
    _, out, _ = ablation
    markdown = (out / "ablation.md").read_text()
    report = json.loads((out / "ablation.json").read_text())
    lm = report["variants"]["gate"]["metrics"]["lm_loss"]
    assert f"{lm['mean']:.4f} [{lm['ci_low']:.4f}, {lm['ci_high']:.4f}]" in markdown
    assert f"| gate | {SEEDS} |" in markdown and "runs/none/seed1/" in markdown
    pixels = matplotlib.image.imread(str(out / "ablation.png"))
    assert pixels.shape[0] > 200 and pixels[..., :3].std() > 0.05


def test_each_run_writes_tensorboard_events(ablation):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, out, _ = ablation
    run_dir = metrics_files(out, "gate", 1)[0].parent
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    steps = 3  # 24 training rows, batch 8
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]  # a line at every step of 3
    for name in ("train/lm_loss", "train/style_kl", "train/lr", "train/grad_norm", "train/skipped_steps"):
        assert name in tags["scalars"], name
    val = json.loads((run_dir / "val_metrics.json").read_text())
    for name in ("agg_metrics", "em", "lm_loss"):
        (event,) = events.Scalars(f"val/{name}")
        assert event.step == steps and event.value == pytest.approx(val[name], rel=1e-6), name
    assert "val/em/style" in tags["scalars"] and "test/em" in tags["scalars"]
    # the gate's modulation per parameter and cross-attention layer (the tiny Q-Former's layers 0 and 2)
    assert {t for t in tags["scalars"] if t.startswith("modulation_val/")} == {
        f"modulation_val/{p}/layer{layer}" for p in ("tanh_g_k", "tanh_g_v") for layer in (0, 2)
    }
    assert {"pictures/training_curves", "pictures/test_modulation"} <= set(tags["images"])
    (image,) = events.Images("pictures/training_curves")
    assert image.width > 400 and image.height > 200
    plain = metrics_files(out, "none", 0)[0].parent
    assert not any(p.name.startswith("modulation") for p in (plain / "tensorboard").iterdir())


def test_two_processes_per_run(tmp_path):
    """--nproc 2: torchrun --no-python lavis-gated-train; rank 0 alone writes the events and the lines."""
    generate(str(tmp_path / "data"), {"train": 2, "val": 1, "test": 1}, seed=4)
    write_config(
        tmp_path,
        tmp_path / "data",
        "base",
        max_epoch=1,
        warmup_steps=1,
        batch_size_train=4,
        batch_size_eval=12,
    )
    (tmp_path / "variants.yaml").write_text("variants:\n  film: []\n")
    result = subprocess.run(
        [*harness(tmp_path), "--seeds", "1", "--nproc", "2", "--reference", ""],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    (metrics,) = metrics_files(tmp_path / "out", "film", 0)
    assert json.loads(metrics.read_text())["num_samples"] == 12
    assert result.stderr.count("epoch 1/1  step 3/3 (100%)") == 1  # 24 rows, 4 per process and step
    assert len(list((metrics.parent / "tensorboard").iterdir())) == 1
    report = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert report["reference"] is None and "paired" not in report["variants"]["film"]
    assert report["variants"]["film"]["metrics"]["em"]["n"] == 1


def test_a_failed_run_is_named_and_left_out(tmp_path):
    """A failing run (here: a value its config refuses when the run loads it, which the harness's key and
    choice check before launch cannot know) does not stop the ablation; the command then fails."""
    (tmp_path / "base.yaml").write_text((REPO / "projects" / "gated" / "demo.yaml").read_text())
    (tmp_path / "variants.yaml").write_text("variants:\n  bad: [run.init_lr=-0.5]\n")
    result = subprocess.run(
        [*harness(tmp_path), "--seeds", "1", "--reference", ""],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 1
    assert "run.init_lr is -0.5" in result.stderr and "1 run(s) failed: bad seed 0" in result.stderr
    report = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert report["missing"] == [{"variant": "bad", "seed": 0}] and report["runs"] == []


def test_variants_files_are_checked(tmp_path):
    shipped = ablate.load_variants(REPO / "projects" / "gated" / "ablation_demo.yaml")
    assert list(shipped) == [
        "none",
        "style_prefix",
        "style_query",
        "film_per_head",
        "film_per_channel",
        "gate",
        "adapter",
        "film_lora",
    ]
    assert all(any(o.startswith("model.gating.type=") for o in options) for options in shipped.values())
    assert "model.gating.type=none" in shipped["none"] and "model.lora.enabled=true" in shipped["film_lora"]
    assert "model.gating.per_head=false" in shipped["film_per_channel"]

    for text, message in (
        ("variants: {a b: []}", "variant name"),
        ("variants: {a: [gating=film]}", "key=value"),
        ("variants: {a: model.gating.type=gate}", "list of key=value"),
        ("x: 1", "`variants:`"),
    ):
        path = tmp_path / "v.yaml"
        path.write_text(text)
        with pytest.raises(ValueError, match=message) as refused:
            ablate.load_variants(path)
        assert str(path) in str(refused.value)


def test_a_misspelt_variant_key_stops_the_harness_before_any_run(tmp_path):
    (tmp_path / "base.yaml").write_text((REPO / "projects" / "gated" / "demo.yaml").read_text())
    (tmp_path / "variants.yaml").write_text(
        "variants:\n  none: [model.gating.type=none]\n  film: [model.gating.per_haed=false]\n"
    )
    with pytest.raises(
        SystemExit,
        match=r"variants\.film: unknown key 'model\.gating\.per_haed'.*"
        r"did you mean model\.gating\.per_head\?",
    ):
        ablate.main(harness(tmp_path)[1:])
    assert not (tmp_path / "out" / "runs").exists()
    (tmp_path / "variants.yaml").write_text("variants:\n  a: [model.gating.type=adaptr]\n")
    with pytest.raises(SystemExit, match=r"variants\.a: model\.gating\.type=adaptr is not one of"):
        ablate.main(harness(tmp_path)[1:])
    # keys of the project YAML that no dataclass holds (LAVIS's build_info) are known too
    ablate.check_options(
        tmp_path / "base.yaml", ["datasets.artquest.build_info.images.storage=x"], {"a": ["run.max_epoch=2"]}
    )


def test_every_run_gets_the_thread_count():
    args = ablate.parse_args(["--cfg-path", str(REPO / "projects/gated/demo.yaml"), "--variants", "v.yaml"])
    assert args.num_threads == max(1, os.cpu_count() or 1) and args.seeds == 5
    args = ablate.parse_args(
        ["--cfg-path", str(REPO / "projects/gated/demo.yaml"), "--variants", "v.yaml", "--num-threads", "3"]
    )
    options = ablate.run_options(args, ["model.gating.type=film"], 1, "d")
    assert options[0] == "run.num_threads=3" and "run.seed=1" in options  # --options after it may override


def test_the_shipped_variants_use_known_keys():
    from omegaconf import OmegaConf

    from lavis_gated.configs.model_config import model_config

    for name, options in ablate.load_variants(REPO / "projects" / "gated" / "ablation_demo.yaml").items():
        model_config(
            OmegaConf.to_container(OmegaConf.from_dotlist(options))["model"], where=f"variant {name}"
        )


def test_launch_commands():
    single = ablate.train_command(1)
    assert single[-1].endswith("lavis-gated-train") or single[-2:] == ["-m", "lavis_gated.train"]
    # torchrun's own rendezvous picks the port as it binds it: none is probed and handed on
    several = ablate.train_command(2)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert several[:5] == launcher and not any(a.startswith("--master_port") for a in several)
    assert (
        several[5:] == ["--no-python", single[0]]
        if len(single) == 1
        else several[5:] == ["-m", "lavis_gated.train"]
    )

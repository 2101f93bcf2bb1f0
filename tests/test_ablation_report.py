"""ablation_report: what it reads from run folders (finished or not), the numbers it reports, its files."""

import json

import matplotlib.image
import pytest

from lavis_gated.ablation import report as ablation_report
from lavis_gated.reports.tables import numeric_metrics

CONFIG = {
    "model": {"arch": "blip2_opt_gated"},
    "run": {"seed": 0, "valid_splits": ["val"], "output_dir": "x"},
    "datasets": {},
}
ANSWERS = {"q1": "cubism", "q2": "circle", "q3": "pop art", "q4": "square"}


def fake_run(
    out, variant, seed, right, em=None, split="test", epoch="best", job="20260101000000", config=None
):
    """A run folder as the runner leaves it; `right`: the question ids answered right (in any case)."""
    seed_dir = out / "runs" / variant / f"seed{seed}"
    run_dir = seed_dir / job
    run_dir.mkdir(parents=True)
    config = config or {**CONFIG, "run": {**CONFIG["run"], "seed": seed, "output_dir": str(seed_dir)}}
    (run_dir / "log.txt").write_text(
        json.dumps(config, indent=4) + "\n" + json.dumps({"train_loss": "1.0"}) + "\n"
    )
    predictions = [
        {"question_id": q, "answer": a, "prediction": f" {a.upper()} " if q in right else "no"}
        for q, a in ANSWERS.items()
    ]
    (run_dir / f"{split}_predictions.json").write_text(json.dumps(predictions))
    em = len(right) / len(ANSWERS) if em is None else em
    metrics = {
        "num_samples": 4,
        "loss": 1.0 + seed,
        "em": em,
        "em_by_type": {"style": em},
        "agg_metrics": em,
        "epoch": epoch,
    }
    (run_dir / f"{split}_metrics.json").write_text(json.dumps(metrics))
    (seed_dir / ablation_report.PROVENANCE).write_text(json.dumps({"commit": f"c{seed}"}))
    return run_dir


def test_numeric_metrics_keep_numbers_and_name_types():
    metrics = {
        "em": 0.5,
        "em_by_type": {"style": 1.0, "shape": 0},
        "epoch": "best",
        "agg_metrics": None,
        "num_samples": 4,
        "flag": True,
        "loss": float("nan"),
        "cider_by_image": {"a": 2},
    }
    assert numeric_metrics(metrics) == {
        "em": 0.5,
        "em[shape]": 0.0,
        "em[style]": 1.0,
        "num_samples": 4.0,
        "cider_by_image[a]": 2.0,
    }


def test_a_run_is_finished_only_when_its_test_phase_wrote_the_metrics(tmp_path):
    seed_dir = tmp_path / "runs" / "a" / "seed0"
    assert ablation_report.finished_run(str(seed_dir), "test") is None  # never started
    # a validated split has metrics after each epoch; only the test phase's (epoch "best") count
    fake_run(tmp_path, "a", 0, {"q1"}, split="val", epoch=3)
    assert ablation_report.finished_run(str(seed_dir), "val") is None
    done = fake_run(tmp_path, "a", 0, {"q1"}, split="val", epoch="best", job="20260101000001")
    assert ablation_report.finished_run(str(seed_dir), "val") == str(done)
    # a split that is not validated each epoch: its metrics file is the test phase's, whatever its epoch
    other = fake_run(tmp_path, "b", 0, {"q1"}, epoch=4)
    assert ablation_report.finished_run(str(other.parent), "test") == str(other)


def test_report_numbers_by_hand(tmp_path):
    # reference right on q1, q2 (seed 0) and q1 (seed 1);
    # variant right on q1, q2, q3 (seed 0) and q1, q4 (seed 1)
    fake_run(tmp_path, "none", 0, {"q1", "q2"})
    fake_run(tmp_path, "none", 1, {"q1"})
    fake_run(tmp_path, "gate", 0, {"q1", "q2", "q3"})
    fake_run(tmp_path, "gate", 1, {"q1", "q4"})
    report = ablation_report.build_report(
        str(tmp_path),
        {"none": ["model.gating.type=none"], "gate": []},
        2,
        "test",
        "none",
        commit="abc",
        resamples=2000,
    )

    gate = report["variants"]["gate"]
    assert gate["seeds"] == [0, 1]
    assert gate["metrics"]["em"]["mean"] == pytest.approx((3 / 4 + 2 / 4) / 2)
    assert gate["metrics"]["em[style]"]["mean"] == pytest.approx(0.625)
    assert gate["metrics"]["loss"]["std"] == pytest.approx(2**-0.5)  # losses 1 and 2
    paired = gate["paired"]
    # seed 0: q3 only the variant; seed 1: q4 only the variant; q1 twice both, q2 once both, once neither
    assert {k: paired[k] for k in ("pairs", "both", "variant_only", "reference_only", "neither")} == {
        "pairs": 8,
        "both": 3,
        "variant_only": 2,
        "reference_only": 0,
        "neither": 3,
    }
    assert paired["mean_difference"] == pytest.approx(2 / 8)
    assert paired["mcnemar_p"] == pytest.approx(0.5)  # b=2, c=0: 2 * 1/4
    assert paired["ci_low"] <= 0.25 <= paired["ci_high"]
    assert "paired" not in report["variants"]["none"]
    runs = {(r["variant"], r["seed"]): r for r in report["runs"]}
    assert (
        runs["gate", 1]["commit"] == "c1" and runs["gate", 1]["run_dir"] == "runs/gate/seed1/20260101000000"
    )
    assert runs["gate", 1]["metrics"]["em"] == 0.5
    # seeds differ in run.seed and run.output_dir only: one config hash per variant once those are left out
    assert runs["gate", 0]["config_sha256"] != runs["gate", 1]["config_sha256"]
    assert len(gate["config_sha256_except_seed"]) == 1
    assert report["missing"] == []


def test_missing_runs_are_listed_and_left_out_of_the_pairing(tmp_path):
    fake_run(tmp_path, "none", 0, {"q1"})
    fake_run(tmp_path, "gate", 0, {"q1"})
    fake_run(tmp_path, "gate", 1, {"q1", "q2"})
    report = ablation_report.build_report(str(tmp_path), {"none": [], "gate": []}, 2, "test", "none", "abc")
    assert report["missing"] == [{"variant": "none", "seed": 1}]
    assert report["variants"]["gate"]["paired"]["seeds_paired"] == [0]
    assert report["variants"]["none"]["metrics"]["em"]["ci_low"] is None  # one seed: no interval
    assert "none seed 1" in ablation_report.format_markdown(report)


def test_the_three_files(tmp_path):
    for seed in range(3):
        fake_run(tmp_path, "none", seed, {"q1"} if seed else {"q2"})
        fake_run(tmp_path, "film", seed, {"q1", "q3"})
    report = ablation_report.build_report(
        str(tmp_path), {"none": [], "film": ["model.gating.type=film"]}, 3, "test", "none", "abc"
    )
    paths = ablation_report.write_report(str(tmp_path), report)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["ablation.json", "ablation.md", "ablation.png"]

    assert json.loads((tmp_path / "ablation.json").read_text()) == json.loads(json.dumps(report))
    markdown = (tmp_path / "ablation.md").read_text()
    em = report["variants"]["film"]["metrics"]["em"]
    assert "| em | " in markdown and f"{em['mean']:.4f} [{em['ci_low']:.4f}, {em['ci_high']:.4f}]" in markdown
    assert "| num_samples | 4 | 4 |" in markdown
    paired = report["variants"]["film"]["paired"]
    assert f"| film | 12 | {paired['variant_acc']:.4f} | {paired['reference_acc']:.4f} | " in markdown
    assert "`model.gating.type=film`" in markdown
    pixels = matplotlib.image.imread(str(tmp_path / "ablation.png"))
    assert pixels.shape[0] > 200 and pixels.shape[1] > 500 and pixels[..., :3].std() > 0.05


def test_a_report_without_any_finished_run_still_writes(tmp_path):
    report = ablation_report.build_report(str(tmp_path), {"none": [], "gate": []}, 1, "test", "none", "abc")
    assert len(report["missing"]) == 2
    assert len(ablation_report.write_report(str(tmp_path), report)) == 3

"""An ablation's results, read back from its run folders: ablation.json, ablation.md (and the chart,
drawn by ablation/plot.py). Reads files only (no LAVIS, no torch), so a report can be remade while runs go
on elsewhere.

Layout of an ablation folder OUT (lavis_gated/ablation/harness.py makes it):
    OUT/runs/<variant>/seed<k>/            run.output_dir of that run, and ablation_run.json (provenance)
    OUT/runs/<variant>/seed<k>/<job_id>/   the ordinary run folder: log.txt, <split>_metrics.json, ...
"""

import hashlib
import json
import logging
import os

from lavis_gated.ablation import stats
from lavis_gated.common.atomic_files import atomic_file
from lavis_gated.common.run_log import logged_config, read_log
from lavis_gated.reports.tables import ORDER, numeric_metrics
from lavis_gated.tasks.metrics import exact_match

PROVENANCE = "ablation_run.json"
SEED_KEYS = ("seed", "output_dir")  # the run keys the seeds of one variant differ in


def seed_folder(out, variant, seed):
    return os.path.join(out, "runs", variant, f"seed{seed}")


def is_finished(run_dir, split):
    """True when the run's test phase wrote <split>_metrics.json.

    A split that is also validated each epoch has a metrics file from its first validation on; the test
    phase's is the one with epoch "best" (the best checkpoint reloaded).
    """
    path = os.path.join(run_dir, f"{split}_metrics.json")
    if not os.path.isfile(path):
        return False
    if _read_json(path).get("epoch") == "best":
        return True
    log = os.path.join(run_dir, "log.txt")
    validated = (
        logged_config(read_log(log)).get("run", {}).get("valid_splits") if os.path.isfile(log) else None
    )
    return split not in (validated or [])


def finished_run(seed_dir, split):
    """The run folder (newest job id first) under `seed_dir` that finished, or None."""
    if not os.path.isdir(seed_dir):
        return None
    jobs = sorted((d for d in os.listdir(seed_dir) if os.path.isdir(os.path.join(seed_dir, d))), reverse=True)
    return next(
        (os.path.join(seed_dir, d) for d in jobs if is_finished(os.path.join(seed_dir, d), split)), None
    )


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def run_config(run_dir):
    """The resolved config the run wrote first into its log.txt ({} without a log)."""
    log = os.path.join(run_dir, "log.txt")
    return logged_config(read_log(log)) if os.path.isfile(log) else {}


def config_hash(config, leave_out=()):
    """sha256 of a config (keys sorted), without the run keys in `leave_out`; None for an empty config."""
    if not config:
        return None
    config = {**config, "run": {k: v for k, v in config.get("run", {}).items() if k not in leave_out}}
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def correctness(predictions_path):
    """{question_id: 1 or 0}: the exact match of each prediction, as the em metric counts it."""
    return {
        str(p["question_id"]): int(exact_match(p["prediction"], p["answer"]))
        for p in _read_json(predictions_path)
    }


def read_run(out, variant, seed, split):
    """One finished run: where it is, its provenance, config hash, metrics and per-question correctness."""
    seed_dir = seed_folder(out, variant, seed)
    run_dir = finished_run(seed_dir, split)
    if run_dir is None:
        return None
    provenance_path = os.path.join(seed_dir, PROVENANCE)
    provenance = _read_json(provenance_path) if os.path.isfile(provenance_path) else {}
    config = run_config(run_dir)
    return {
        "variant": variant,
        "seed": seed,
        "run_dir": os.path.relpath(run_dir, out),
        "commit": provenance.get("commit", "unknown"),
        "uncommitted_changes": provenance.get("uncommitted_changes"),
        "config_sha256": config_hash(config),
        "config_sha256_except_seed": config_hash(config, leave_out=SEED_KEYS),
        "metrics": numeric_metrics(_read_json(os.path.join(run_dir, f"{split}_metrics.json"))),
        "correct": correctness(os.path.join(run_dir, f"{split}_predictions.json")),
    }


def build_report(
    out,
    variants,
    seeds,
    split,
    reference,
    commit,
    resamples=stats.BOOTSTRAP_RESAMPLES,
    bootstrap_seed=0,
    cfg=None,
    options=(),
):
    """The ablation's numbers from its folder. variants: {name: [option, ...]} in order; seeds: how many.

    Per variant: a t-interval over its finished seeds of every metric; against `reference` (None: no
    comparison) the paired correctness over the seeds both finished.
    """
    runs = {(v, s): read_run(out, v, s, split) for v in variants for s in range(seeds)}
    report = {
        "cfg": cfg,
        "options": list(options),
        "split": split,
        "seeds": seeds,
        "reference": reference,
        "commit": commit,
        "confidence": stats.CONFIDENCE,
        "measure": "exact match per question (em)",
        "bootstrap_resamples": resamples,
        "bootstrap_seed": bootstrap_seed,
        "variants": {},
        "runs": [{k: v for k, v in r.items() if k != "correct"} for r in runs.values() if r],
        "missing": [{"variant": v, "seed": s} for (v, s), r in runs.items() if r is None],
    }
    for name, variant_options in variants.items():
        finished = [s for s in range(seeds) if runs[name, s]]
        entry = {
            "options": list(variant_options),
            "seeds": finished,
            "metrics": stats.summarise_over_seeds([runs[name, s]["metrics"] for s in finished]),
            # one hash when its seeds ran the same config but for the seed
            "config_sha256_except_seed": sorted(
                {runs[name, s]["config_sha256_except_seed"] for s in finished} - {None}
            ),
        }
        paired = [s for s in finished if runs.get((reference, s))]
        if reference is not None and name != reference and paired:
            entry["paired"] = {
                "reference": reference,
                "seeds_paired": paired,
                **stats.paired_comparison(
                    [runs[name, s]["correct"] for s in paired],
                    [runs[reference, s]["correct"] for s in paired],
                    resamples,
                    bootstrap_seed,
                ),
            }
        report["variants"][name] = entry
    return report


def metric_order(report):
    """Metric names: report.py's headline order, then per-type values, then the rest as first seen."""
    names = list(dict.fromkeys(m for v in report["variants"].values() for m in v["metrics"]))
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(names, key=lambda m: (rank.get(m, len(ORDER) + ("[" not in m)), names.index(m)))


def format_interval(summary, count=False):
    """mean [low, high]; a count (num_samples) that no seed changes as the number alone."""
    if summary is None:
        return "-"
    if count and not summary["std"]:
        return f"{summary['mean']:g}"
    if summary["ci_low"] is None:
        return f"{summary['mean']:.4f} (1 seed)"
    return f"{summary['mean']:.4f} [{summary['ci_low']:.4f}, {summary['ci_high']:.4f}]"


def format_markdown(report):
    """ablation.md: the metrics table (mean and t-interval per variant), the paired tests, the runs."""
    names = list(report["variants"])
    pct = f"{report['confidence']:.0%}"
    lines = [
        f"# Ablation on the {report['split']} split",
        "",
        f"- config: `{report['cfg']}`"
        + (f", options `{' '.join(report['options'])}`" if report["options"] else ""),
        f"- commit: `{report['commit']}`"
        + (" (with uncommitted changes)" if report.get("uncommitted_changes") else ""),
        f"- seeds per variant: {report['seeds']}",
        f"- reference: `{report['reference']}`" if report["reference"] else "- no paired comparison",
        "",
    ]
    differing = [n for n, v in report["variants"].items() if len(v["config_sha256_except_seed"]) > 1]
    if differing:
        lines += ["**Seeds that ran different configs (beyond run.seed):** " + ", ".join(differing), ""]
    if report["missing"]:
        lines += [
            "**Unfinished runs (left out):** "
            + ", ".join(f"{m['variant']} seed {m['seed']}" for m in report["missing"]),
            "",
        ]
    lines += [
        f"## Metrics: mean over seeds [{pct} t-interval]",
        "",
        "| metric | " + " | ".join(f"{n} (n={len(report['variants'][n]['seeds'])})" for n in names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for metric in metric_order(report):
        cells = [
            format_interval(report["variants"][n]["metrics"].get(metric), metric.startswith("num_"))
            for n in names
        ]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    compared = [n for n in names if "paired" in report["variants"][n]]
    if compared:
        lines += [
            "",
            f"## Paired against `{report['reference']}`: exact match per question, pooled over seeds",
            "",
            f"Difference = variant accuracy - reference accuracy over the same (question, seed) pairs; "
            f"{pct} bootstrap interval over questions ({report['bootstrap_resamples']} resamples); exact "
            f"McNemar p on the discordant pairs (b: only the variant right, c: only the reference right).",
            "",
            "| variant | pairs | variant em | reference em | difference [interval] | b | c | McNemar p |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for n in compared:
            p = report["variants"][n]["paired"]
            lines.append(
                f"| {n} | {p['pairs']} | {p['variant_acc']:.4f} | {p['reference_acc']:.4f} | "
                f"{p['mean_difference']:+.4f} [{p['ci_low']:+.4f}, {p['ci_high']:+.4f}] | "
                f"{p['variant_only']} | {p['reference_only']} | {p['mcnemar_p']:.4g} |"
            )
    lines += [
        "",
        "## Runs",
        "",
        "| variant | seed | run folder | commit | config sha256 |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['variant']} | {r['seed']} | `{r['run_dir']}` | `{r['commit'][:12]}`"
        f"{' (uncommitted changes)' if r['uncommitted_changes'] else ''} | "
        f"`{(r['config_sha256'] or 'unknown')[:16]}` |"
        for r in report["runs"]
    ]
    lines += ["", "Options per variant:", ""]
    lines += [f"- `{n}`: `{' '.join(v['options']) or '(none)'}`" for n, v in report["variants"].items()]
    return "\n".join(lines) + "\n"


def write_report(out, report):
    """ablation.json, ablation.md and ablation.png in `out`, each written whole; returns their paths."""
    paths = [os.path.join(out, f"ablation.{ext}") for ext in ("json", "md", "png")]
    with atomic_file(paths[0], "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    with atomic_file(paths[1], "w", encoding="utf-8") as f:
        f.write(format_markdown(report))
    try:
        from lavis_gated.ablation.plot import plot_ablation  # matplotlib: the plots extra
    except ImportError as err:
        logging.warning("ablation.png not drawn (%s): pip install 'lavis-gated[plots]'", err)
        return paths[:2]
    plot_ablation(report, paths[2])
    return paths

"""ablation.png: each variant's metrics as bars with their t-interval over seeds, and its paired difference
in exact match against the reference with its t-interval over seeds (the numbers of ablation.json).

Apart from report.py because matplotlib is an optional extra (`lavis-gated[plots]`): the report is written
without it."""

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lavis_gated.reports.plots import save_figure  # noqa: E402

RATES = ("em", "vqa_acc", "probe_style_acc", "style_head_acc", "style_answer_label_rate")
LOSSES = ("loss", "lm_loss", "style_name_loss", "style_kl", "style_ce")


def _bars(ax, report, metrics, title):
    """Grouped bars: one group per metric, one bar per variant, error bars from the t-interval."""
    names = list(report["variants"])
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        summaries = [report["variants"][name]["metrics"].get(m) for m in metrics]
        means = [s["mean"] if s else np.nan for s in summaries]
        low = [s["mean"] - s["ci_low"] if s and s["ci_low"] is not None else 0 for s in summaries]
        high = [s["ci_high"] - s["mean"] if s and s["ci_high"] is not None else 0 for s in summaries]
        x = np.arange(len(metrics)) + (i - (len(names) - 1) / 2) * width
        ax.bar(x, means, width, yerr=[low, high], capsize=3, color=f"C{i}", label=name)
    ax.set_xticks(np.arange(len(metrics)), metrics, rotation=30, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)


def _paired(ax, report):
    """One bar per compared variant: the mean per-seed difference in exact match, its t-interval over seeds
    (none with one seed) and the paired t-test p."""
    compared = [(n, v["paired"]) for n, v in report["variants"].items() if "paired" in v]
    ax.axhline(0, color="black", linewidth=0.8)
    for i, (name, p) in enumerate(compared):
        colour = f"C{list(report['variants']).index(name)}"
        mean, has_interval = p["mean_difference"], p["ci_low"] is not None
        ax.bar(
            i,
            mean,
            0.6,
            color=colour,
            yerr=[[mean - p["ci_low"]], [p["ci_high"] - mean]] if has_interval else None,
            capsize=4,
        )
        ax.annotate(
            f"p={p['t_p']:.3g}" if p["t_p"] is not None else "1 seed",
            (i, p["ci_high"] if has_interval else mean),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax.set_xticks(range(len(compared)), [n for n, _ in compared], rotation=30, ha="right", fontsize=8)
    ax.set_title(
        f"paired em difference vs {report['reference']}\n(per seed; t-interval over seeds, t-test p)",
        fontsize=10,
    )


def plot_ablation(report, out_path):
    """Draw the chart of `report` (build_report's dict) into out_path (PNG, written whole)."""
    present = {m for v in report["variants"].values() for m in v["metrics"]}
    rates = [m for m in RATES if m in present]
    rates += sorted(m for m in present if m.startswith(("em[", "vqa_acc[")))
    losses = [m for m in LOSSES if m in present]
    compared = any("paired" in v for v in report["variants"].values())
    panels = [p for p in (rates, losses) if p] + ([None] if compared else [])
    widths = [max(2, len(p)) if p else max(2, len(report["variants"]) - 1) for p in panels]
    fig, axes = plt.subplots(
        1,
        max(1, len(panels)),
        figsize=(max(8, 1.1 * sum(widths) + 2), 4.8),
        squeeze=False,
        gridspec_kw={"width_ratios": widths or [1]},
    )
    for ax, panel in zip(axes[0], panels):
        if panel is None:
            _paired(ax, report)
        else:
            _bars(ax, report, panel, "rates" if panel is rates else "losses")
    seeds = {len(v["seeds"]) for v in report["variants"].values()}
    fig.suptitle(
        f"ablation on {report['split']}: mean over {'/'.join(map(str, sorted(seeds)))} seed(s), "
        f"{report['confidence']:.0%} t-interval",
        fontsize=11,
    )
    fig.tight_layout()
    return save_figure(fig, out_path)

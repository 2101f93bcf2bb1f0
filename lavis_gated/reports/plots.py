"""Pictures of a run, written beside its metrics: training curves and the modulation heatmap (PNG).

    python -m lavis_gated.reports.plots output/demo/<job>      # redraws every picture of that run folder

- training_curves.png: loss parts (train and validation) and the selection metric per epoch, read from
  LAVIS's log.txt; for an evaluation-only folder, from the log.txt beside the evaluated checkpoint.
- <split>_modulation.png: from <split>_modulation.json, per modulated parameter and (Q-Former layer, head),
  each style's deviation from the mean over styles (which heads does each style move?) beside its mean
  strength.
"""

import json
import logging
import os

from lavis_gated.common.atomic_files import atomic_file
from lavis_gated.common.command_line import command_parser
from lavis_gated.common.run_log import logged_config, read_log

# matplotlib (and numpy) are imported where a picture is drawn: lavis-gated-compare, which imports this
# module, and --help never draw, and matplotlib takes about a second to import


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on training hosts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


LOSS_PARTS = ("loss", "lm_loss", "style_name_loss", "style_kl", "style_ce")
AGG_DEFINITION = {"loss": "1 / (1 + loss)"}


def epoch_history(entries):
    """(train, evaluations): per-epoch dicts with plain keys and float values, in logged order.

    Train stats are the entries with train_* keys (epoch = train_epoch, else their position); evaluations
    are the entries with <split>_agg_metrics (epoch = <split>_epoch), with their split under "split".
    """
    train, evaluations = [], []
    for entry in entries:
        splits = [k[: -len("_agg_metrics")] for k in entry if k.endswith("_agg_metrics")]
        if splits:
            prefix = splits[0] + "_"
            stats = {k[len(prefix) :]: v for k, v in entry.items() if k.startswith(prefix)}
            if isinstance(stats.get("epoch"), int):
                evaluations.append({"split": splits[0], **_floats(stats)})
        elif any(k.startswith("train_") for k in entry):
            stats = _floats({k[len("train_") :]: v for k, v in entry.items() if k.startswith("train_")})
            stats.setdefault("epoch", float(len(train)))
            train.append(stats)
    return train, evaluations


def _floats(stats):
    out = {}
    for k, v in stats.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            pass  # per-type dicts and the like are not curves
    return out


def training_log_of(run_dir):
    """The log.txt with this run's training epochs: its own, or that of the checkpoint it evaluated."""
    own = os.path.join(run_dir, "log.txt")
    if not os.path.isfile(own):
        return None
    entries = read_log(own)
    if epoch_history(entries)[0]:
        return own
    model = logged_config(entries).get("model", {})
    if model.get("load_finetuned") and model.get("finetuned"):
        theirs = os.path.join(os.path.dirname(model["finetuned"]), "log.txt")
        if os.path.isfile(theirs) and epoch_history(read_log(theirs))[0]:
            return theirs
    return None


def save_figure(fig, path):
    """Atomic PNG write: readers never see half a picture."""
    try:
        with atomic_file(path) as handle:
            fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return path


def training_curves_figure(log_path):
    """Left: loss parts per epoch (train solid, validation dashed). Right: agg_metrics per epoch, best
    marked. The caller saves and closes the figure."""
    entries = read_log(log_path)
    train, evaluations = epoch_history(entries)
    split = (
        "val"
        if any(r["split"] == "val" for r in evaluations)
        else next((r["split"] for r in evaluations), "")
    )
    evaluations = [
        r for r in evaluations if r["split"] == split
    ]  # the split that selects the best checkpoint
    select_by = logged_config(entries).get("run", {}).get("select_by", "loss")
    fig, (losses, metric) = pyplot().subplots(1, 2, figsize=(12, 4.5))
    for i, part in enumerate(LOSS_PARTS):
        color = f"C{i}"
        for rows, style, where in ((train, "-", "train"), (evaluations, "--", split)):
            points = [(r["epoch"], r[part]) for r in rows if part in r]
            if points:
                losses.plot(*zip(*points), style, color=color, marker=".", label=f"{where} {part}")
    losses.set(xlabel="epoch", ylabel="loss", title="loss parts")
    losses.legend(fontsize=7, ncol=2)
    points = [(r["epoch"], r["agg_metrics"]) for r in evaluations if "agg_metrics" in r]  # null: not finite
    if points:
        epochs, values = zip(*points)
        metric.plot(epochs, values, "-o", color="C5", label=f"{split} agg_metrics")
        best = max(range(len(values)), key=values.__getitem__)  # the first best, as numpy's argmax
        metric.plot(
            [epochs[best]],
            [values[best]],
            "*",
            color="C3",
            markersize=16,
            label=f"best: epoch {epochs[best]:g} ({values[best]:.4f})",
        )
        metric.legend(fontsize=8)
    metric.set(
        xlabel="epoch",
        ylabel="agg_metrics",
        title=f"selection metric: {select_by}, agg_metrics = {AGG_DEFINITION.get(select_by, select_by)}",
    )
    fig.suptitle(f"training curves ({os.path.basename(os.path.dirname(os.path.abspath(log_path)))})")
    return fig


def modulation_summary_figure(summary_path):
    """Per modulated parameter: each style's deviation from the mean over styles, and its absolute strength
    (styles x Q-Former layer/head; modulation_figure.py). The caller saves and closes the figure."""
    with open(summary_path, encoding="utf-8") as f:
        summary = json.load(f)
    epoch = f", epoch {summary['epoch']}" if "epoch" in summary else ""
    source = f"{os.path.basename(summary_path)}{epoch}; mean over the split's questions"
    from lavis_gated.reports.modulation_figure import style_modulation_figure

    return style_modulation_figure(summary, source)


def run_figures(run_dir):
    """(name, figure) of every picture the run folder has data for, one at a time: training_curves (from
    its log.txt or the evaluated checkpoint's) and <split>_modulation (from each <split>_modulation.json).
    The caller closes each figure (plt.close, or TensorBoard's add_figure does)."""
    log_path = training_log_of(run_dir)
    if log_path is not None:
        yield "training_curves", training_curves_figure(log_path)
    for name in sorted(os.listdir(run_dir)):
        if name.endswith("_modulation.json"):
            yield name[: -len(".json")], modulation_summary_figure(os.path.join(run_dir, name))


def draw_run(run_dir):
    """Draw every picture the run folder has data for, as <name>.png there; returns the written paths."""
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    written = [save_figure(fig, os.path.join(run_dir, f"{name}.png")) for name, fig in run_figures(run_dir)]
    if training_log_of(run_dir) is None:
        logging.warning(
            "%s: no training epochs in its log.txt or the evaluated checkpoint's; no training curves", run_dir
        )
    return written


def main(argv=None):
    parser = command_parser(
        "lavis-gated-plots",
        "Draw a run folder's pictures: training_curves.png and <split>_modulation.png.",
        "lavis-gated-plots output/demo/<job>",
        "evaluation.md",
    )
    parser.add_argument(
        "run_dir", help="a run folder (output_dir/<job_id>) with log.txt and *_modulation.json"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in draw_run(args.run_dir):
        print(f"picture: {os.path.abspath(path)}")


if __name__ == "__main__":
    main()

"""Print a metrics JSON (as written by the style_captioning task) as a table; the one-line epoch summary.

python -m lavis_gated.reports.tables output/demo/<job>/test_metrics.json
"""

import json
import math

from lavis_gated.common.command_line import command_parser

ORDER = (
    "num_samples",
    "num_probe_rows",
    "style_label_source",
    "loss",
    "lm_loss",
    "style_name_loss",
    "style_kl",
    "style_ce",
    "probe_style_acc",
    "probe_style_agreement_with_style_table",
    "style_answer_label_rate",
    "style_head_acc",
    "style_head_agreement_with_style_table",
    "any_style_token_rate",
    "any_style_word_rate",
    "em",
    "vqa_acc",
    "bleu4",
    "rougeL",
    "cider",
    "agg_metrics",
)
BY_TYPE = ("em_by_type", "vqa_acc_by_type")
# (key, short name) of the loss parts and headline numbers in the epoch summary
LOSS_PARTS = (
    ("loss", "loss"),
    ("lm_loss", "lm"),
    ("style_name_loss", "name"),
    ("style_kl", "kl"),
    ("style_ce", "ce"),
)
HEADLINE = (
    ("em", "em"),
    ("vqa_acc", "vqa_acc"),
    ("probe_style_acc", "probe_style_acc"),
    ("probe_style_agreement_with_style_table", "probe_style_agreement"),
    ("style_head_acc", "style_head_acc"),
)


def metric_rows(metrics):
    """(name, value) rows: the headline numbers first, then per-question-type values, then the rest."""
    rows = [(k, metrics[k]) for k in ORDER if k in metrics]
    for key in BY_TYPE:
        rows += [(f"{key[:-8]}[{t}]", v) for t, v in sorted(metrics.get(key, {}).items())]
    shown = set(ORDER) | set(BY_TYPE)
    rows += [(k, v) for k, v in sorted(metrics.items()) if k not in shown and not isinstance(v, (dict, list))]
    return rows


def numeric_metrics(metrics):
    """A metrics JSON -> {name: float} of its numbers; per-type dicts flattened as em_by_type -> em[type].

    Booleans, strings ("epoch": "best"), nulls (a non-finite agg_metrics) and non-finite values are left out.
    """
    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            base = key[: -len("_by_type")] if key.endswith("_by_type") else key
            out.update({f"{base}[{sub}]": float(v) for sub, v in sorted(value.items()) if _is_number(v)})
        elif _is_number(value):
            out[key] = float(value)
    return out


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def format_value(value):
    if value is None:
        return "null"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_table(metrics):
    rows = [(name, format_value(value)) for name, value in metric_rows(metrics)]
    width = max(len(name) for name, _ in rows)
    line = "-" * (width + 14)
    return "\n".join(
        [line, f"{'metric':<{width}}  {'value':>10}", line]
        + [f"{name:<{width}}  {value:>10}" for name, value in rows]
        + [line]
    )


def _number(value):
    return "null" if value is None else f"{float(value):.4f}"  # null: no row of the split has that metric


def _numbers(stats, names):
    return " ".join(f"{short} {_number(stats[key])}" for key, short in names if key in stats)


def epoch_summary(epoch, train_stats, split_name, metrics, select_by):
    """One line per epoch: train loss parts, validation loss parts and answers, the selection metric."""
    parts = [f"epoch {epoch}"]
    if train_stats:
        parts.append("train " + _numbers(train_stats, LOSS_PARTS))
    parts.append(f"{split_name} " + _numbers(metrics, LOSS_PARTS + HEADLINE))
    agg = metrics["agg_metrics"]
    parts.append(f"agg_metrics {'not finite' if agg is None else format(agg, '.4f')} (select_by {select_by})")
    return " | ".join(parts)


def main(argv=None):
    parser = command_parser(
        "lavis-gated-report",
        "Print a run's metrics JSON (<split>_metrics.json) as a table, metrics in a fixed order.",
        "lavis-gated-report output/demo/<job>/test_metrics.json",
        "evaluation.md",
    )
    parser.add_argument("metrics_json", help="a <split>_metrics.json written by evaluation")
    args = parser.parse_args(argv)
    with open(args.metrics_json, encoding="utf-8") as f:
        print(format_table(json.load(f)))


if __name__ == "__main__":
    main()

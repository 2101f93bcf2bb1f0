"""Print a metrics JSON (as written by the style_captioning task) as a table.

    python -m lavis_gated.report output/demo/<job>/test_metrics.json
"""
import argparse
import json

ORDER = ("num_samples", "loss", "lm_loss", "style_hit_loss", "style_kl", "style_ce", "style_hit_rate",
         "style_head_acc", "em", "vqa_acc", "agg_metrics")


def metric_rows(metrics):
    """(name, value) rows: the headline numbers first, then per-question-type values, then the rest."""
    rows = [(k, metrics[k]) for k in ORDER if k in metrics]
    for key in ("em_by_type", "vqa_acc_by_type"):
        rows += [(f"{key[:-8]}[{t}]", v) for t, v in sorted(metrics.get(key, {}).items())]
    shown = set(ORDER) | {"em_by_type", "vqa_acc_by_type"}
    rows += [(k, v) for k, v in sorted(metrics.items()) if k not in shown and not isinstance(v, (dict, list))]
    return rows


def format_table(metrics):
    rows = [(name, f"{value:.4f}" if isinstance(value, float) else str(value)) for name, value in metric_rows(metrics)]
    width = max(len(name) for name, _ in rows)
    line = "-" * (width + 14)
    return "\n".join([line, f"{'metric':<{width}}  {'value':>10}", line]
                     + [f"{name:<{width}}  {value:>10}" for name, value in rows] + [line])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics_json")
    args = parser.parse_args(argv)
    with open(args.metrics_json, encoding="utf-8") as f:
        print(format_table(json.load(f)))


if __name__ == "__main__":
    main()

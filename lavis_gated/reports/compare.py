"""Side-by-side metrics of runs, e.g. the gated model against plain BLIP-2 (gating.type none).

    python -m lavis_gated.reports.compare RUN_A RUN_B [--split test]

RUN_* is a run folder (its <split>_metrics.json is read) or a metrics JSON file. With two runs a last
column gives B - A.
"""

import argparse
import json
import os

from lavis_gated.common.run_log import logged_config, read_log
from lavis_gated.reports.tables import format_value, metric_rows


def metrics_path(run, split):
    path = os.path.join(run, f"{split}_metrics.json") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{run}: no {split}_metrics.json (evaluate the run first, or pass a metrics JSON)"
        )
    return path


def gating_type(path):
    """model.gating.type from the log.txt beside a metrics file, or "?" when there is no such log."""
    log = os.path.join(os.path.dirname(os.path.abspath(path)), "log.txt")
    if not os.path.isfile(log):
        return "?"
    return str(logged_config(read_log(log)).get("model", {}).get("gating", {}).get("type", "?"))


def comparison_rows(all_metrics):
    """[(name, [value or None per run])]: the first run's row order, then rows only later runs have."""
    rows = [dict(metric_rows(m)) for m in all_metrics]
    names = list(dict.fromkeys(name for r in rows for name in r))
    return [(name, [r.get(name) for r in rows]) for name in names]


def format_comparison(labels, all_metrics):
    header = ["metric", *labels] + (["B - A"] if len(labels) == 2 else [])
    table = [header]
    for name, values in comparison_rows(all_metrics):
        cells = [name] + ["-" if v is None else format_value(v) for v in values]
        if len(values) == 2:
            a, b = values
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            cells.append(format_value(b - a) if numeric else "")
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in table
    ]
    rule = "-" * len(lines[0])
    return "\n".join([rule, lines[0], rule, *lines[1:], rule])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders or metrics JSON files")
    parser.add_argument("--split", default="test", help="split whose metrics are compared (default: test)")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("give at least two runs to compare")
    labels = [chr(ord("A") + i) for i in range(len(args.runs))]
    all_metrics = []
    for label, run in zip(labels, args.runs):
        path = metrics_path(run, args.split)
        with open(path, encoding="utf-8") as f:
            all_metrics.append(json.load(f))
        print(f"{label}: {path} (gating.type {gating_type(path)})")
    print(format_comparison(labels, all_metrics))


if __name__ == "__main__":
    main()

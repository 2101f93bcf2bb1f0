"""What a built split holds: rows per question_type and per style, and the rows left out and why."""

import logging
from collections import Counter

NO_STYLE_LABEL = "(no style)"


def summarise(rows, skipped=None):
    """{"rows", "question_type", "style", "skipped"} of a split's rows (dicts with question_type, style)."""
    return {
        "rows": len(rows),
        "question_type": dict(sorted(Counter(r["question_type"] or "(none)" for r in rows).items())),
        "style": dict(sorted(Counter(r["style"] or NO_STYLE_LABEL for r in rows).items())),
        "skipped": dict(skipped or {}),
    }


def log_summary(dataset_name, summaries):
    """One block in the log per dataset: a line per split."""
    lines = [f"dataset {dataset_name}:"]
    for split, s in summaries.items():
        skipped = ", ".join(f"{n} {why}" for why, n in s["skipped"].items()) or "none"
        lines.append(
            f"  {split}: {s['rows']} rows; skipped: {skipped}; question_type {s['question_type']}; "
            f"style {s['style']}"
        )
    logging.info("\n".join(lines))

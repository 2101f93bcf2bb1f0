"""What a built split holds: rows per question_type and per style, the rows left out and why, and how
many name their image by an absolute path (used as given, wherever it lies)."""

import logging
import os
from collections import Counter

NO_STYLE_LABEL = "(no style)"


def summarise(rows, skipped=None):
    """{"rows", "question_type", "style", "skipped", "absolute_image_paths"} of a split's rows (dicts
    with image, question_type, style)."""
    return {
        "rows": len(rows),
        "question_type": dict(sorted(Counter(r["question_type"] or "(none)" for r in rows).items())),
        "style": dict(sorted(Counter(r["style"] or NO_STYLE_LABEL for r in rows).items())),
        "skipped": dict(skipped or {}),
        "absolute_image_paths": sum(os.path.isabs(r["image"]) for r in rows),
    }


def log_summary(dataset_name, summaries):
    """One block in the log per dataset: a line per split."""
    lines = [f"dataset {dataset_name}:"]
    for split, s in summaries.items():
        skipped = ", ".join(f"{n} {why}" for why, n in s["skipped"].items()) or "none"
        absolute = s.get("absolute_image_paths", 0)
        lines.append(
            f"  {split}: {s['rows']} rows; skipped: {skipped}; "
            + (f"absolute image paths: {absolute}; " if absolute else "")
            + f"question_type {s['question_type']}; style {s['style']}"
        )
    logging.info("\n".join(lines))

"""Whether the style terms cover any train row: run.style_question_types against the train split's question
types and style labels, checked when the datasets are built.

With `style_question_types: [style]` on data without a `style` question type (the public ArtQuest has none:
artist, school, timeframe, type, technique, title), the hit-rate and KL terms apply to no row, so they are
silently off and their metrics read as if perfect.
"""

import logging

STYLE_ROW_TERMS = ("style_hit_loss", "style_kl")  # the terms run.style_question_types selects rows for


def covered_rows(rows, style_question_types):
    """How many rows (dicts with question_type, style) the hit-rate and KL terms apply to: labelled ones
    of a type in style_question_types (None: every labelled row)."""
    return sum(
        1
        for r in rows
        if r["style"] and (style_question_types is None or r["question_type"] in style_question_types)
    )


def check_style_coverage(train_rows, style_question_types, weights):
    """The number of train rows the hit-rate and KL terms cover; when run.style_question_types leaves them
    none, a ValueError naming the key and the question types found if either term has a weight, else a
    warning (the terms are off, but their metrics would still be empty). None without train rows."""
    if not train_rows:
        return None
    covered = covered_rows(train_rows, style_question_types)
    if covered or style_question_types is None:
        return covered
    found = sorted({r["question_type"] or "(none)" for r in train_rows})
    labelled = sum(1 for r in train_rows if r["style"])
    message = (
        f"run.style_question_types is {sorted(style_question_types)!r}, but no train row is of those types "
        "and has a style, so the style hit-rate and KL terms would cover no train row; question types in "
        f"the train split: {found} ({labelled} of {len(train_rows)} rows have a style); set "
        "run.style_question_types to the types whose answers are styles, or null for every labelled row"
    )
    if found == ["(none)"]:  # the data's fault, not the setting's: say so first
        message = (
            "no train row has a question type: the train file has no question_type column, or it is empty "
            "(name the column that holds the types with datasets.<name>.fields.question_type); so "
            f"run.style_question_types {sorted(style_question_types)!r} leaves the style hit-rate and KL "
            "terms no train row (for data without question types, set run.style_question_types: null)"
        )
    if any(weights[term] > 0 for term in STYLE_ROW_TERMS):
        raise ValueError(f"{message} (run.style_hit_weight and run.style_kl_weight are not both 0)")
    logging.warning(message)
    return covered

"""Which rows the style hit-rate and KL terms apply to (run.style_rows), and how many train rows each term
covers (the start-up report).

Rules; every one needs a style label the vocabulary knows:
- question_types: rows whose question_type is in run.style_question_types (null: every labelled row);
- answer_names_style: rows whose reference answer names a style of the vocabulary (datasets/style_text), of
  the listed question types if run.style_question_types is set: the rule for data without a `style` question
  type, such as ArtQuest, whose `school` answers are often style names;
- all_labelled: every labelled row.
The hit-rate term then counts only the answer positions whose target token identifies a style
(models/style_tokens.py), so a style row whose reference has no such token adds nothing to it.
"""

from lavis_gated.datasets.style_text import mentions_style
from lavis_gated.datasets.style_vocabulary import NO_STYLE

RULES = ("question_types", "answer_names_style", "all_labelled")


class StyleRowRule:
    """run.style_rows and run.style_question_types, checked, as one rule."""

    def __init__(self, rule="question_types", question_types=None):
        if rule not in RULES:
            raise ValueError(f"run.style_rows is {rule!r}; it must be one of {list(RULES)}")
        if rule == "all_labelled" and question_types:
            raise ValueError(
                "run.style_rows is all_labelled but run.style_question_types lists types; use "
                "style_rows: question_types to apply the style terms to those types only"
            )
        self.rule = rule
        self.question_types = set(question_types) if question_types else None

    def rows(self, style_ids, question_types, answers, style_names) -> list[bool]:
        """Per row, whether the style hit-rate and KL terms apply."""
        out = []
        for style_id, question_type, answer in zip(style_ids, question_types, answers):
            row = int(style_id) != NO_STYLE
            if row and self.rule != "all_labelled" and self.question_types is not None:
                row = question_type in self.question_types
            if row and self.rule == "answer_names_style":
                row = mentions_style(answer, style_names)
            out.append(row)
        return out


def coverage(rows, hit_positions, labelled):
    """{term: train rows it covers} from per-row lists: style rows, their hit-rate positions (answer tokens
    that identify a style), labelled rows."""
    return {
        "lm_loss": len(rows),
        "style_hit_loss": sum(1 for row, n in zip(rows, hit_positions) if row and n > 0),
        "style_kl": sum(rows),
        "style_ce": sum(labelled),
    }


def uncovered_terms(covered, weights):
    """The weighted terms that cover no row: a misconfiguration (their metrics would be null)."""
    return [term for term, count in covered.items() if weights.get(term, 0) > 0 and count == 0]

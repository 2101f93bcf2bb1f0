"""What the task reads about styles while it builds the datasets and the model: the vocabulary a resumed
checkpoint keeps, the labels the model's vocabulary lacks, the form each style name takes in the train split's
answers, the answers that name no style (models/style_tokens.py's rule needs them), and how many train rows
each loss term covers (logged at start-up; a weighted term that covers none is an error)."""

import logging

from lavis_gated.checkpoint_io import load_checkpoint, local_checkpoint_path
from lavis_gated.datasets.style_text import answer_forms, mentions_style
from lavis_gated.datasets.style_vocabulary import StyleVocabulary, unseen_styles
from lavis_gated.models.checkpoint_loading import style_names_in_checkpoint
from lavis_gated.models.style_parts import set_answer_forms
from lavis_gated.models.text_inputs import answer_ids
from lavis_gated.tasks.style_rows import coverage, uncovered_terms


def resumed_style_vocabulary(run_cfg, train_vocabulary):
    """The style vocabulary stored in run.resume_ckpt_path (None when not resuming a training run); it is kept
    (with a warning) when the train split's now differs."""
    path = run_cfg.get("resume_ckpt_path", None)
    if not path or run_cfg.get("evaluate", False):
        return None
    names = style_names_in_checkpoint(load_checkpoint(local_checkpoint_path(path), mmap=True))
    if not names:
        return None
    vocabulary = StyleVocabulary(names)
    if train_vocabulary is not None and vocabulary != train_vocabulary:
        logging.warning(
            "resuming %s: its style vocabulary %s is kept, although the train split now has %s",
            path,
            vocabulary.names,
            train_vocabulary.names,
        )
    return vocabulary


def report_unseen_styles(split_styles, vocabulary):
    """Log, per split ({"<dataset>/<split>": labels}), the rows whose style the model's vocabulary lacks
    (evaluated as no style); returns {split: {style: rows}}."""
    unseen = {split: u for split, labels in split_styles.items() if (u := unseen_styles(labels, vocabulary))}
    for split, styles in unseen.items():
        logging.warning(
            "%s: %d rows have styles not in the model's style vocabulary (counted as "
            "num_unknown_style, left out of the style terms): %s",
            split,
            sum(styles.values()),
            styles,
        )
    return unseen


def train_rows(datasets):
    """The rows of every dataset's train split (dicts with answer, question_type, style)."""
    return [row for splits in datasets.values() if "train" in splits for row in splits["train"].annotation]


def use_train_answer_forms(model, rows, max_share):
    """Give the model its styles' forms in the train answers and the rule's token set (style_parts)."""
    names = model.vocabulary.names
    answers = [row["answer"] for row in rows]
    others = [a for a in answers if not mentions_style(a, names)]
    set_answer_forms(model, answer_forms(names, answers), others, max_share)


def term_coverage(model, rows):
    """{term: train rows it covers}: the LM term every row; the style probe's terms (naming, KL) and the CE
    every labelled row, whatever its question; any_style_token_rows: rows whose target has a token that
    identifies some style."""
    style_ids = model.vocabulary.ids([row["style"] for row in rows])
    answers = [row["answer"] for row in rows]
    hit = set(model.style_vocabulary.hit_tokens.tolist())
    distinct = sorted(set(answers))
    targets = answer_ids(model.opt_tokenizer, distinct, model.max_txt_len, model.eos_token_id)
    positions = dict(zip(distinct, (sum(t in hit for t in ids) for ids in targets)))
    return coverage([i >= 0 for i in style_ids], [positions[a] for a in answers])


def check_coverage(covered, weights, config, fail=True):
    """Log the coverage (and the probe's share of each batch); a weighted term that covers no train row is
    a ValueError naming it (when training; else a warning)."""
    total = covered["lm_loss"]
    logging.info(
        "train rows each loss term covers: %s; the style probe scores %s of each batch's labelled rows%s "
        "(every labelled row in evaluation)",
        ", ".join(
            f"{term} {count} ({count / total:.1%})" if total else f"{term} {count}"
            for term, count in covered.items()
        ),
        f"{config.style_probe_share:g}",
        f", at most {config.style_probe_max_rows}" if config.style_probe_max_rows else "",
    )
    missing = uncovered_terms(covered, weights)
    if missing:
        message = (
            f"the weighted loss terms {missing} cover no train row: no train row has a style label the "
            "vocabulary knows, so they would train nothing and report null. Give the rows style labels "
            "(docs/data.md), or set their weights to 0."
        )
        if fail:
            raise ValueError(message)
        logging.warning(message)

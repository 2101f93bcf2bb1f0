"""What the task reads about styles while it builds the datasets and the model: the vocabulary a resumed
checkpoint keeps, the labels the model's vocabulary lacks, the form each style name takes in the train split's
answers, the answers that name no style (models/style_tokens.py's rule needs them), and how many train rows
each loss term covers (logged at start-up; a weighted term that covers none is an error)."""

import logging

from omegaconf import OmegaConf

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


def explicit_style_names(model_cfg, model_cls):
    """model.style_names as the run's config sets it, when that differs from its model type's own list
    (the WikiArt styles of the model-type YAMLs); None when it is the model type's, or empty."""
    names = list(model_cfg.get("style_names") or [])
    if not names:
        return None
    try:
        default = OmegaConf.load(model_cls.default_config_path(model_cfg.get("model_type"))).model
    except Exception:  # an unknown model type: every list it is given is the config's own
        return names
    return None if list(default.get("style_names") or []) == names else names


def warn_replaced_style_names(explicit, used, source):
    """A warning when an explicit model.style_names (`explicit`) is not the vocabulary the model got from
    `source` (`used`, its names): the checkpoint's or train split's vocabulary wins, since the style head's
    rows and the style tokens follow it, but never silently. True when it warned."""
    if explicit is None or StyleVocabulary(explicit).names == list(used):
        return False
    logging.warning(
        "model.style_names (%d names: %s) is not used: the style vocabulary comes from %s (%d names: %s); "
        "leave model.style_names out, or train a new run on data labelled with your names",
        len(explicit),
        explicit[:8],
        source,
        len(used),
        list(used)[:8],
    )
    return True


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


def term_coverage(model, rows, row_rule):
    """{term: train rows it covers}: the LM term every row, the KL the style rows, the hit rate the style rows
    whose target has a token that identifies a style, the CE the labelled rows."""
    names = model.vocabulary.names
    style_ids = model.vocabulary.ids([row["style"] for row in rows])
    answers = [row["answer"] for row in rows]
    style_rows = row_rule.rows(style_ids, [row.get("question_type", "") for row in rows], answers, names)
    hit = set(model.style_vocabulary.hit_tokens.tolist())
    distinct = sorted(set(answers))
    targets = answer_ids(model.opt_tokenizer, distinct, model.max_txt_len, model.eos_token_id)
    positions = dict(zip(distinct, (sum(t in hit for t in ids) for ids in targets)))
    return coverage(style_rows, [positions[a] for a in answers], [i >= 0 for i in style_ids])


def check_coverage(covered, weights, row_rule, fail=True):
    """Log the coverage; a weighted term that covers no train row is a ValueError naming it (when training;
    else a warning)."""
    logging.info(
        "train rows each loss term covers (style_rows: %s): %s",
        row_rule.rule,
        ", ".join(f"{term} {count}" for term, count in covered.items()),
    )
    missing = uncovered_terms(covered, weights)
    if missing:
        message = (
            f"the weighted loss terms {missing} cover no train row (style_rows: {row_rule.rule}, "
            f"style_question_types: {sorted(row_rule.question_types or []) or None}): they would train "
            "nothing and report null. Check the style labels and run.style_rows / run.style_question_types "
            "(docs/evaluation.md), or set their weights to 0."
        )
        if fail:
            raise ValueError(message)
        logging.warning(message)

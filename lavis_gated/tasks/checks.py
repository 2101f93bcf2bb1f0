"""What the task reads about styles while it builds the datasets and the model: the vocabulary a resumed
checkpoint keeps (and an explicit model.style_names it replaces, said in a warning), the labels the
model's vocabulary lacks, the form each style name takes in the train split's answers, the answers that
name no style (styles.py's rule needs them), and how many train rows each loss term covers (logged at
start-up; a weighted term that covers none is an error).

The style terms come from the style probe, which covers every labelled row whatever its question (the
public ArtQuest asks no style question: artist, school, timeframe, type, technique, title), so coverage is a
matter of labels only.

Reference answers and captions against the model's token budgets, counted per split at build time.

Generation stops after run.max_len new tokens, and training keeps at most model.max_txt_len // 2 tokens
of an answer (text_inputs.answer_ids). Both count tokens of the model's tokenizer, not words: with the
tiny model's 599-token vocabulary "1951-2000" is 7 tokens, so run.max_len: 6 can never produce it and
caps exact match below 1 with no other hint. A caption keeps at most model.max_caption_len tokens (its
prompt counted apart); a caption cut there is trained without the end token.
"""

import logging

from omegaconf import OmegaConf

from lavis_gated.common.checkpoints import load_checkpoint, local_checkpoint_path
from lavis_gated.models.checkpoint_loading import style_names_in_checkpoint
from lavis_gated.models.style_parts import set_answer_forms
from lavis_gated.models.text_inputs import UNLIMITED, answer_ids
from lavis_gated.styles import StyleVocabulary, answer_forms, mentions_style, unseen_styles
from lavis_gated.tasks.losses import coverage, uncovered_terms


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
        "train rows each loss term covers: %s; the style probe scores each labelled row with chance %s%s "
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


def answer_token_counts(tokenizer, answers, eos_token_id):
    """{answer: its tokens} of the distinct answers, tokenised as training targets are (end token not
    counted)."""
    distinct = list(dict.fromkeys(answers))
    ids = answer_ids(tokenizer, distinct, 2 * UNLIMITED, eos_token_id)
    return {answer: len(tokens) - 1 for answer, tokens in zip(distinct, ids)}


def _first(counts, limit):
    over = [(a, n) for a, n in counts.items() if n > limit][:3]
    return ", ".join(f"{a!r} ({n} tokens)" for a, n in over)


def report_answer_lengths(tokenizer, split_answers, eos_token_id, max_len, max_txt_len):
    """{split: {"answers", "over_max_len", "over_answer_budget", "longest"}} for {split: reference
    answers}; a warning for each split and budget that some answer exceeds."""
    report = {}
    for split, answers in split_answers.items():
        counts = answer_token_counts(tokenizer, answers, eos_token_id)
        lengths = [counts[a] for a in answers]
        stats = {
            "answers": len(answers),
            "over_max_len": sum(n > max_len for n in lengths),
            "over_answer_budget": sum(n > max_txt_len // 2 for n in lengths),
            "longest": max(lengths, default=0),
        }
        report[split] = stats
        if stats["over_max_len"]:
            logging.warning(
                "%s: %d of %d reference answers are longer than run.max_len = %d tokens: generation stops "
                "before their end, so they never match exactly; first: %s. run.max_len counts tokens of the "
                "model's tokenizer, not words (the longest answer here has %d)",
                split,
                stats["over_max_len"],
                len(answers),
                max_len,
                _first(counts, max_len),
                stats["longest"],
            )
        if stats["over_answer_budget"]:
            logging.warning(
                "%s: %d of %d reference answers are longer than model.max_txt_len // 2 = %d tokens: training "
                "targets keep only that many, and no end token; first: %s",
                split,
                stats["over_answer_budget"],
                len(answers),
                max_txt_len // 2,
                _first(counts, max_txt_len // 2),
            )
    return report


def report_caption_lengths(tokenizer, split_captions, eos_token_id, max_len, max_caption_len):
    """{split: {"captions", "cut", "over_max_len", "longest"}} for {split: reference captions}: "cut" counts
    the captions model.max_caption_len cuts (trained without their end token); a warning per split and budget
    that some caption exceeds."""
    report = {}
    for split, captions in split_captions.items():
        if not captions:
            continue
        counts = answer_token_counts(tokenizer, captions, eos_token_id)
        lengths = [counts[c] for c in captions]
        stats = {
            "captions": len(captions),
            "cut": sum(n > max_caption_len for n in lengths),
            "over_max_len": sum(n > max_len for n in lengths),
            "longest": max(lengths),
        }
        report[split] = stats
        if stats["cut"]:
            logging.warning(
                "%s: %d of %d captions are longer than model.max_caption_len = %d tokens: they are cut there "
                "and trained without the end token (the longest has %d); first: %s",
                split,
                stats["cut"],
                len(captions),
                max_caption_len,
                stats["longest"],
                _first(counts, max_caption_len),
            )
        if stats["over_max_len"]:
            logging.warning(
                "%s: %d of %d reference captions are longer than run.max_len = %d tokens: generation stops "
                "before their end",
                split,
                stats["over_max_len"],
                len(captions),
                max_len,
            )
    return report

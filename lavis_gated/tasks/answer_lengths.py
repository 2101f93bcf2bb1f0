"""Reference answers and captions against the model's token budgets, counted per split at build time.

Generation stops after run.max_len new tokens, and training keeps at most model.max_txt_len // 2 tokens
of an answer (text_inputs.answer_ids). Both count tokens of the model's tokenizer, not words: with the
tiny model's 599-token vocabulary "1951-2000" is 7 tokens, so run.max_len: 6 can never produce it and
caps exact match below 1 with no other hint. A caption keeps at most model.max_caption_len tokens (its prompt
counted apart); a caption cut there is trained without the end token.
"""

import logging

from lavis_gated.models.text_inputs import UNLIMITED, answer_ids


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

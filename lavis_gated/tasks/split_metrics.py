"""Every number reported for an evaluated split, from its per-sample records (pure; docs/evaluation.md
defines each one). A metric of rows that the split does not have (no style row, no labelled row) is None
(null in JSON), not 0.0, which would read as a perfect loss or a failed accuracy."""

import math

from lavis_gated.tasks.answer_metrics import answer_metrics, style_naming_rates, style_word_hit_rate
from lavis_gated.tasks.loss_terms import TERMS, weighted_total
from lavis_gated.tasks.text_metrics import caption_metrics


def _mean(values):
    return sum(values) / len(values) if values else None


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else None


def is_caption(row):
    """A caption row (or its record): its question is blank (text_inputs.row_texts' rule); a row without a
    "question" key is not one."""
    question = row.get("question")
    return question is not None and not str(question).strip()


def split_metrics(records, weights, select_by, style_names, caption_tokenizer="auto", meteor=False):
    """records: valid_step's dicts; weights: {term: weight}; select_by: what agg_metrics is;
    caption_tokenizer: text_metrics' choice (auto, ptb or words); meteor: compute METEOR (run.meteor).

    Question rows give the answer metrics (em, vqa_acc, bleu1-4, meteor, rougeL, cider); caption rows the
    caption metrics (caption_*: each image's one caption against all its references), and the rate at which
    captions name their image's style, overall and per style."""
    style_rows = [r for r in records if r["style_row"]]
    hit_rows = [r for r in style_rows if r["style_positions"] > 0]
    labelled = [r for r in records if r["style_id"] >= 0]
    m = {
        "num_samples": len(records),
        "num_unknown_style": sum(1 for r in records if r["style"] and r["style_id"] < 0),
        "num_style_rows": len(style_rows),
        "num_hit_rows": len(hit_rows),
        # weighted by answer tokens, as in training (and LAVIS): the mean over every answer token of the split
        "lm_loss": _ratio(
            sum(r["lm_loss"] * r["lm_tokens"] for r in records), sum(r["lm_tokens"] for r in records)
        ),
        "style_hit_loss": _mean([r["style_hit_loss"] for r in hit_rows]),
        "style_kl": _mean([r["style_kl"] for r in style_rows]),
        "style_ce": _mean([r["style_ce"] for r in labelled]),
        "style_hit_rate": _ratio(
            sum(r["style_hits"] for r in style_rows), sum(r["style_positions"] for r in style_rows)
        ),
        "style_word_hit_rate": style_word_hit_rate(records, style_names),
        "style_head_acc": _mean([float(r["style_head_prediction"] == r["style_id"]) for r in labelled]),
    }
    # a term that covers no row adds nothing to the loss, as in training
    m["loss"] = weighted_total({term: m[term] or 0.0 for term in TERMS}, weights) if records else None
    if not weights["style_ce"]:
        del m["style_ce"]  # not trained: the style head is random
    answers = [r for r in records if not is_caption(r)]
    captions = [r for r in records if is_caption(r)]
    m["num_caption_rows"] = len(captions)
    m.update(answer_metrics(answers))
    answer_text = caption_metrics(answers, caption_tokenizer, meteor)
    caption_text = caption_metrics(captions, caption_tokenizer, meteor, prefix="caption_", spice=True)
    m.update(answer_text)
    m.update(caption_text)
    m["not_computed"] = {**answer_text["not_computed"], **caption_text["not_computed"]}
    m["caption_style_naming_rate"], m["caption_style_naming_rate_by_style"] = style_naming_rates(captions)
    if select_by == "loss":
        m["agg_metrics"] = None if m["loss"] is None else 1.0 / (1.0 + m["loss"])
    else:
        m["agg_metrics"] = m[select_by]
    if m["loss"] is None or not math.isfinite(m["loss"]):
        m["agg_metrics"] = None  # a NaN loss means blown-up weights, whatever their answers score
    elif m["agg_metrics"] is not None and not math.isfinite(m["agg_metrics"]):
        m["agg_metrics"] = None
    return m

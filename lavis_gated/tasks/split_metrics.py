"""Every number reported for an evaluated split, from its per-sample records (pure; docs/evaluation.md
defines each one). A metric of rows that the split does not have (no probed row, no labelled row) is None
(null in JSON), not 0.0, which would read as a perfect loss or a failed accuracy.

Labels made by the style CNN (a style table of its pseudo-labels: style_source "cnn") are no ground truth:
accuracies against them are named for what they are, *_agreement_with_style_table, and where the style head
starts from that same CNN's classifier, its agreement measures the CNN agreeing with itself.
"""

import math

from lavis_gated.tasks.answer_metrics import answer_metrics, any_style_word_rate, style_answer_label_rate
from lavis_gated.tasks.loss_terms import TERMS, weighted_total
from lavis_gated.tasks.text_metrics import caption_metrics

CNN_SOURCE = "cnn"  # datasets/style_sources: labels the style CNN predicted
ACCURACY_KEYS = ("probe_style_acc", "style_head_acc")


def _mean(values):
    return sum(values) / len(values) if values else None


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else None


def label_source(records):
    """Where the labelled records' styles come from: one source name, "mixed: a, b", or None unlabelled."""
    sources = sorted({r.get("style_source") or "unknown" for r in records if r["style_id"] >= 0})
    if not sources:
        return None
    return sources[0] if len(sources) == 1 else "mixed: " + ", ".join(sources)


def accuracy_name(key, source):
    """probe_style_acc -> probe_style_agreement_with_style_table where any label is the CNN's."""
    if source and CNN_SOURCE in source.replace("mixed: ", "").split(", "):
        return key[: -len("_acc")] + "_agreement_with_style_table"
    return key


def split_metrics(
    records, weights, select_by, style_names, caption_tokenizer="auto", style_question_types=("style",)
):
    """records: valid_step's dicts; weights: {term: weight}; select_by: what agg_metrics is;
    caption_tokenizer: text_metrics' choice (auto, ptb or words); style_question_types: the question types
    that ask for a style (style_answer_label_rate)."""
    probed = [r for r in records if r["probe_row"]]
    labelled = [r for r in records if r["style_id"] >= 0]
    source = label_source(records)
    m = {
        "num_samples": len(records),
        "num_unknown_style": sum(1 for r in records if r["style"] and r["style_id"] < 0),
        "num_probe_rows": len(probed),
        "style_label_source": source,
        # weighted by answer tokens, as in training (and LAVIS): the mean over every answer token of the split
        "lm_loss": _ratio(
            sum(r["lm_loss"] * r["lm_tokens"] for r in records), sum(r["lm_tokens"] for r in records)
        ),
        "style_name_loss": _mean([r["style_name_loss"] for r in probed]),
        "style_kl": _mean([r["style_kl"] for r in probed]),
        "style_ce": _mean([r["style_ce"] for r in labelled]),
        "probe_style_acc": _mean([float(r["probe_prediction"] == r["style_id"]) for r in probed]),
        "style_answer_label_rate": style_answer_label_rate(
            records, style_names, set(style_question_types or ())
        ),
        "any_style_token_rate": _ratio(
            sum(r["style_hits"] for r in records), sum(r["style_positions"] for r in records)
        ),
        "any_style_word_rate": any_style_word_rate(records, style_names),
        "style_head_acc": _mean([float(r["style_head_prediction"] == r["style_id"]) for r in labelled]),
    }
    # a term that covers no row adds nothing to the loss, as in training
    m["loss"] = weighted_total({term: m[term] or 0.0 for term in TERMS}, weights) if records else None
    if not weights["style_ce"]:
        del m["style_ce"]  # not trained: the style head is random
    for key in ACCURACY_KEYS:
        m[accuracy_name(key, source)] = m.pop(key)
    m.update(answer_metrics(records))
    m.update(caption_metrics(records, caption_tokenizer))
    if select_by == "loss":
        m["agg_metrics"] = None if m["loss"] is None else 1.0 / (1.0 + m["loss"])
    else:
        m["agg_metrics"] = m[accuracy_name(select_by, source) if select_by in ACCURACY_KEYS else select_by]
    if m["loss"] is None or not math.isfinite(m["loss"]):
        m["agg_metrics"] = None  # a NaN loss means blown-up weights, whatever their answers score
    elif m["agg_metrics"] is not None and not math.isfinite(m["agg_metrics"]):
        m["agg_metrics"] = None
    return m

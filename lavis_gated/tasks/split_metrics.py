"""Every number reported for an evaluated split, from its per-sample records (pure; docs/evaluation.md
defines each one)."""

import math

from lavis_gated.tasks.answer_metrics import answer_metrics, style_word_hit_rate
from lavis_gated.tasks.loss_terms import weighted_total
from lavis_gated.tasks.text_metrics import caption_metrics


def _mean(values):
    return sum(values) / len(values) if values else 0.0


def split_metrics(records, weights, select_by, style_names):
    """records: valid_step's dicts; weights: {term: weight}; select_by: what agg_metrics is."""
    style_rows = [r for r in records if r["style_row"]]
    labelled = [r for r in records if r["style_id"] >= 0]
    m = {
        "num_samples": len(records),
        "num_unknown_style": sum(1 for r in records if r["style"] and r["style_id"] < 0),
        "lm_loss": _mean([r["lm_loss"] for r in records]),
        "style_hit_loss": _mean([r["style_hit_loss"] for r in style_rows]),
        "style_kl": _mean([r["style_kl"] for r in style_rows]),
        "style_ce": _mean([r["style_ce"] for r in labelled]),
        "style_hit_rate": (
            sum(r["style_hits"] for r in style_rows) / max(1, sum(r["style_positions"] for r in style_rows))
        ),
        "style_word_hit_rate": style_word_hit_rate(records, style_names),
        "style_head_acc": _mean([float(r["style_head_prediction"] == r["style_id"]) for r in labelled]),
    }
    m["loss"] = weighted_total(m, weights)
    if not weights["style_ce"]:
        del m["style_ce"]  # not trained: the style head is random
    m.update(answer_metrics(records))
    m.update(caption_metrics(records))
    m["agg_metrics"] = 1.0 / (1.0 + m["loss"]) if select_by == "loss" else m[select_by]
    if not records or not math.isfinite(m["loss"]) or not math.isfinite(m["agg_metrics"]):
        m["agg_metrics"] = None  # a NaN loss means blown-up weights, whatever their answers score
    return m

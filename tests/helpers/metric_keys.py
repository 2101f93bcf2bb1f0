"""The keys of a split's metrics JSON (style_captioning's metrics), written once for the tests that check
them: a key added, renamed or lost is a change users of the JSON see."""

TASK_METRIC_KEYS = {
    "num_samples",
    "num_unknown_style",
    "num_style_rows",
    "num_hit_rows",
    "caption_tokenizer",
    "loss",
    "lm_loss",
    "style_hit_loss",
    "style_kl",
    "style_ce",
    "style_hit_rate",
    "style_word_hit_rate",
    "style_head_acc",
    "em",
    "vqa_acc",
    "em_by_type",
    "vqa_acc_by_type",
    "bleu4",
    "rougeL",
    "cider",
    "agg_metrics",
}
COUNT_KEYS = {"num_samples", "num_unknown_style", "num_style_rows", "num_hit_rows"}
# the values that are neither counts nor floats: the tokenizer's name and the per-question-type dicts
FLOAT_METRIC_KEYS = TASK_METRIC_KEYS - COUNT_KEYS - {"caption_tokenizer", "em_by_type", "vqa_acc_by_type"}

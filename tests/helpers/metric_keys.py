"""The keys of a split's metrics JSON (style_captioning's metrics), written once for the tests that check
them: a key added, renamed or lost is a change users of the JSON see."""

TASK_METRIC_KEYS = {
    "num_samples",
    "num_unknown_style",
    "num_probe_rows",
    "style_label_source",
    "caption_tokenizer",
    "loss",
    "lm_loss",
    "style_name_loss",
    "style_kl",
    "style_ce",
    "probe_style_acc",
    "style_answer_label_rate",
    "any_style_token_rate",
    "any_style_word_rate",
    "style_head_acc",
    "em",
    "vqa_acc",
    "em_by_type",
    "vqa_acc_by_type",
    "bleu1",
    "bleu2",
    "bleu3",
    "bleu4",
    "meteor",
    "rougeL",
    "cider",
    "num_caption_rows",
    "caption_bleu1",
    "caption_bleu2",
    "caption_bleu3",
    "caption_bleu4",
    "caption_meteor",
    "caption_rougeL",
    "caption_cider",
    "caption_spice",
    "caption_style_naming_rate",
    "caption_style_naming_rate_by_style",
    "not_computed",
    "agg_metrics",
}
COUNT_KEYS = {"num_samples", "num_unknown_style", "num_probe_rows", "num_caption_rows"}
# the values that are neither counts nor floats: names (tokenizer, label source), the per-type and per-style
# dicts and the metrics not computed (with why)
FLOAT_METRIC_KEYS = (
    TASK_METRIC_KEYS
    - COUNT_KEYS
    - {
        "caption_tokenizer",
        "style_label_source",
        "em_by_type",
        "vqa_acc_by_type",
        "caption_style_naming_rate_by_style",
        "not_computed",
    }
)

"""Generation emits only ids its tokenizer has. OPT's embedding has more rows than its tokenizer has tokens
(facebook/opt-*: 50272 for 50265); an id among the extra rows cannot be decoded (batch_decode raised
"TypeError: sequence item 0: expected str instance, NoneType found" at real size, with random weights)."""

import json
import os

import pytest
import torch
from helpers.tiny_model import batch, build_tiny
from transformers import AutoTokenizer

from lavis_gated.offline.standins import write_sources

EXTRA_ROWS = 7  # 50272 - 50265, as in facebook/opt-*


@pytest.fixture(scope="module")
def rigged(tmp_path_factory):
    """A tiny model whose OPT has EXTRA_ROWS embedding rows beyond its tokenizer, rigged so that every
    position scores the extra ids highest and, among the tokenizer's ids, the first token of " cubism"."""
    opt = write_sources("tiny", str(tmp_path_factory.mktemp("sources")))["opt"]
    with open(os.path.join(opt, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    tokens = len(AutoTokenizer.from_pretrained(opt, use_fast=False))
    config["vocab_size"] = tokens + EXTRA_ROWS
    with open(os.path.join(opt, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    model = build_tiny(opt_model=opt).eval()
    assert model.opt_model.lm_head.weight.shape[0] == tokens + EXTRA_ROWS
    target = model.opt_tokenizer(" cubism", add_special_tokens=False).input_ids[0]
    with torch.no_grad():
        decoder, rows = model.opt_model.model.decoder, model.opt_model.lm_head.weight
        direction = torch.randn(rows.shape[1], generator=torch.Generator().manual_seed(0))
        direction /= direction.norm()
        decoder.final_layer_norm.weight.zero_()  # every position's last hidden state is `direction`
        decoder.final_layer_norm.bias.copy_(direction)
        rows[tokens:] = 100 * direction
        rows[target] = 50 * direction
        logits = model.opt_model.lm_head(direction)
    assert logits.argmax() >= tokens, "the extra rows must win the unmasked argmax"
    return model, target


@pytest.mark.parametrize(
    "options",
    [dict(num_beams=1), dict(num_beams=3), dict(use_nucleus_sampling=True)],
    ids=["greedy", "beam", "nucleus"],
)
def test_generation_never_emits_an_id_the_tokenizer_lacks(rigged, options):
    model, target = rigged
    torch.manual_seed(0)
    texts = model.generate(batch(2), max_length=3, **options)
    assert texts == [model.opt_tokenizer.decode([target] * 3).strip()] * 2


def test_predict_answers_too(rigged):
    model, target = rigged
    answers = model.predict_answers(batch(2), num_beams=2, max_len=2)
    assert answers == [model.opt_tokenizer.decode([target] * 2).strip()] * 2

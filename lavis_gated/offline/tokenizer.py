"""A byte-level BPE tokenizer as large as OPT's (50265 tokens), generated in a fraction of a second, so that
real-size stand-ins mirror the real pair: OPT-2.7B's embedding has 50272 rows, its tokenizer 50265 tokens, and
generation must never emit an id the tokenizer cannot decode. Loads as transformers' slow GPT2Tokenizer, as
facebook/opt-* do."""

import itertools
import json
import os
import shutil

from lavis_gated.models.backbones import PACKAGE_CONFIG_DIR

TINY_ASSETS = os.path.join(PACKAGE_CONFIG_DIR, "assets", "tiny")
OPT_TOKENIZER_SIZE = 50265  # len(AutoTokenizer.from_pretrained("facebook/opt-2.7b")); the same for opt-6.7b
OPT_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0-3, as in facebook/opt-*'s vocab.json


def _words():
    """Words the synthetic BPE spells as whole tokens: the prompts' and the synthetic ArtQuest data's."""
    from lavis_gated.datasets.synthetic_artquest import QUESTION_TEMPLATES, SHAPES, STYLES

    text = " ".join(
        [
            "Question Answer a photo of the painting style",
            *STYLES,
            *SHAPES,
            *(q for questions in QUESTION_TEMPLATES.values() for q in questions),
        ]
    )
    return sorted({w.strip("?:,.") for w in text.split()} - {""})


def synthetic_bpe(size=OPT_TOKENIZER_SIZE):
    """(vocab {token: id}, merges [(left, right)]) of a byte-level BPE with `size` tokens, deterministic.

    OPT's four special tokens, GPT-2's 256 byte symbols, merges that spell a few words whole (with and
    without their leading space, "Ġ"), then merges of existing tokens with byte symbols in a fixed order.
    """
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    byte_symbol = bytes_to_unicode()
    vocab = {token: i for i, token in enumerate(OPT_SPECIAL_TOKENS + tuple(byte_symbol.values()))}
    merges = []

    def merge(left, right):
        if left + right not in vocab and len(vocab) < size:
            vocab[left + right] = len(vocab)
            merges.append((left, right))

    for word in _words():
        for spelled in (" " + word, word):
            symbols = [byte_symbol[b] for b in spelled.encode("utf-8")]
            for i in range(1, len(symbols)):
                merge("".join(symbols[:i]), symbols[i])
    tokens = list(vocab)[len(OPT_SPECIAL_TOKENS) :]
    for left, right in itertools.product(tokens, byte_symbol.values()):
        if len(vocab) == size:
            break
        merge(left, right)
    if len(vocab) != size:
        raise ValueError(f"synthetic BPE: only {len(vocab)} of {size} tokens could be generated")
    return vocab, merges


def write_opt_tokenizer(folder, size=OPT_TOKENIZER_SIZE):
    """vocab.json, merges.txt and OPT's special-token settings: loads as the slow GPT2Tokenizer
    (AutoTokenizer(use_fast=False)), as facebook/opt-* do."""
    vocab, merges = synthetic_bpe(size)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges))
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TINY_ASSETS, "opt", name), folder)
    update_json(os.path.join(folder, "tokenizer_config.json"), model_max_length=2048)  # OPT's context length


def update_json(path, **values):
    with open(path, encoding="utf-8") as f:
        content = json.load(f)
    content.update(values)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=1)

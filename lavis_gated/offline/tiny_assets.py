"""Regenerate the small offline assets of the `tiny` model type (tokenizers and configs, no weights).

The files under tiny/ are committed; this script documents exactly how they were made:
    python -m lavis_gated.offline.tiny_assets
The OPT side is a byte-level BPE (loads as transformers' slow GPT2Tokenizer, like facebook/opt-*),
trained on the synthetic ArtQuest questions, answers and the WikiArt style names; the Q-Former side
is a minimal BERT word-piece vocabulary (the Q-Former's text embeddings are unused by BLIP-2 OPT).
"""

import json
import os
import string

from lavis_gated.datasets.synthetic_artquest import QUESTION_TEMPLATES, SHAPES, STYLES

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "tiny")
WIKIART_STYLES = (
    "abstract expressionism",
    "action painting",
    "analytical cubism",
    "art nouveau (modern)",
    "baroque",
    "color field painting",
    "contemporary realism",
    "cubism",
    "early renaissance",
    "expressionism",
    "fauvism",
    "high renaissance",
    "impressionism",
    "mannerism (late renaissance)",
    "minimalism",
    "naive art (primitivism)",
    "new realism",
    "northern renaissance",
    "pointillism",
    "pop art",
    "post-impressionism",
    "realism",
    "rococo",
    "romanticism",
    "symbolism",
    "synthetic cubism",
    "ukiyo-e",
    "non art",
)
ARTQUEST_WORDS = (
    "artist school timeframe type technique title painting portrait landscape religious oil on canvas "
    "fresco panel who painted this what is the of which when was it made italian dutch flemish french "
    "spanish german 1401 1450 1451 1500 1501 1550 1601 1650 1701 1750 1801 1850 1851 1900 yes no"
)
OPT_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>"]


def _corpus():
    lines = [f"Question: {q} Answer:" for qs in QUESTION_TEMPLATES.values() for q in qs]
    lines += [" " + s for s in STYLES + SHAPES + WIKIART_STYLES] * 20
    lines += [ARTQUEST_WORDS] * 5
    return lines


def make_opt_tokenizer(out_dir, vocab_size=640):
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(
        _corpus(), vocab_size=vocab_size, min_frequency=1, special_tokens=OPT_SPECIAL
    )
    tokenizer.save_model(out_dir)
    specials = {"bos_token": "</s>", "eos_token": "</s>", "unk_token": "</s>", "pad_token": "<pad>"}
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w") as f:
        json.dump(specials, f, indent=2)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(
            dict(specials, add_bos_token=True, tokenizer_class="GPT2Tokenizer", model_max_length=512),
            f,
            indent=2,
        )
    return tokenizer.get_vocab_size()


def make_opt_config(out_dir, vocab_size):
    config = {
        "model_type": "opt",
        "architectures": ["OPTForCausalLM"],
        "vocab_size": vocab_size,
        "hidden_size": 128,
        "word_embed_proj_dim": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "ffn_dim": 512,
        "max_position_embeddings": 128,
        "do_layer_norm_before": True,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_function": "relu",
        # A frozen random LM at the usual init std 0.02 has near-uniform logits whatever its prefix, and a
        # Q-Former cannot steer it; 0.09 at width 128 can be steered (see README, "The tiny model").
        "init_std": 0.09,
        "pad_token_id": 1,
        "bos_token_id": 2,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def make_bert(out_dir):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.ascii_lowercase + string.digits)
    words += ["##" + c for c in string.ascii_lowercase + string.digits] + list(".,?!:;'-()")
    with open(os.path.join(out_dir, "vocab.txt"), "w") as f:
        f.write("\n".join(words) + "\n")
    config = {
        "model_type": "bert",
        "architectures": ["BertModel"],
        "vocab_size": len(words) + 1,  # +1: [DEC]
        "hidden_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 256,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": 64,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
    }
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(
            {"do_lower_case": True, "tokenizer_class": "BertTokenizer", "model_max_length": 64}, f, indent=2
        )


def main():
    opt_dir, bert_dir = os.path.join(TINY, "opt"), os.path.join(TINY, "bert")
    os.makedirs(opt_dir, exist_ok=True)
    os.makedirs(bert_dir, exist_ok=True)
    make_opt_config(opt_dir, make_opt_tokenizer(opt_dir))
    make_bert(bert_dir)
    print("wrote", opt_dir, bert_dir)


if __name__ == "__main__":
    main()

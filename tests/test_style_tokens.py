"""Style names in answer text (datasets/style_text) and the style tokens the losses read (models/style_tokens,
style_parts): real-looking names, capitalised, hyphenated and bracketed, through OPT-type byte-level BPEs."""

from types import SimpleNamespace

import pytest
import torch
from helpers.tiny_model import build_tiny
from transformers import GPT2Tokenizer

from lavis_gated.models.backbones import PACKAGE_CONFIG_DIR
from lavis_gated.models.style_parts import set_answer_forms
from lavis_gated.models.text_inputs import answer_ids
from lavis_gated.offline.standins import write_opt_tokenizer
from lavis_gated.offline.tiny_assets import WIKIART_STYLES
from lavis_gated.styles import (
    StyleVocabulary,
    answer_forms,
    find_style_spans,
    form_token_ids,
    identifying_tokens,
    mentions_style,
    style_words,
)
from lavis_gated.tasks import losses

# (style label as a WikiArt-derived table spells it, answer as ArtQuest writes it)
REAL = [
    ("Ukiyo_e", "Ukiyo-e"),
    ("Impressionism", "Impressionism"),
    ("Art_Nouveau_Modern", "Art Nouveau (Modern)"),
    ("Post_Impressionism", "Post-Impressionism"),
    ("Pop_Art", "Pop Art"),
]
GENERIC = " a painting (new)"


@pytest.fixture(scope="module", params=["tiny", "opt_sized"])
def tokenizer(request, tmp_path_factory):
    """The tiny model's byte-level BPE (599 tokens) and a synthetic one of OPT's size (50265 tokens)."""
    if request.param == "tiny":
        return GPT2Tokenizer.from_pretrained(f"{PACKAGE_CONFIG_DIR}/assets/tiny/opt")
    folder = tmp_path_factory.mktemp("opt_sized_tokenizer")
    write_opt_tokenizer(str(folder))
    return GPT2Tokenizer.from_pretrained(str(folder))


def test_style_words_ignore_case_hyphens_underscores_and_brackets():
    assert style_words("Art Nouveau (Modern)") == ("art", "nouveau", "modern")
    assert style_words("Ukiyo_e") == style_words("UKIYO-E.") == style_words("ukiyo e") == ("ukiyo", "e")
    assert style_words(float("nan")) == ()


def test_find_style_spans_keeps_the_answers_own_text():
    names = StyleVocabulary.from_labels(label for label, _ in REAL).names
    assert names == ["art nouveau modern", "impressionism", "pop art", "post impressionism", "ukiyo e"]
    spans = find_style_spans("A Post-Impressionism work, then Art Nouveau (Modern).", names)
    assert sorted(spans) == [(0, "Art Nouveau (Modern)"), (1, "Impressionism"), (3, "Post-Impressionism")]
    assert find_style_spans("(Ukiyo-e)", names) == [(4, "Ukiyo-e")]
    assert not mentions_style("Pop artist", names) and mentions_style("pop-art", names)


def test_answer_forms_are_the_most_frequent_spans_else_the_name():
    names = ["pop art", "ukiyo e", "baroque"]
    answers = ["Pop Art", "pop art", "Pop Art", "Ukiyo-e", "Circle", "A Ukiyo-e print"]
    assert answer_forms(names, answers) == ["Pop Art", "Ukiyo-e", "baroque"]


def test_training_targets_contain_the_vocabulary_tokens(tokenizer):
    """Finding 1: the vocabulary tokenised its normalised names (" ukiyo e"), which the targets of real
    answers (" Ukiyo-e") never contain; its tokens now come from the answers' own forms."""
    vocabulary = StyleVocabulary.from_labels(label for label, _ in REAL)
    answers = [answer for _, answer in REAL]
    forms = answer_forms(vocabulary.names, answers)
    ids = dict(zip(vocabulary.names, form_token_ids(tokenizer, forms)))
    eos = tokenizer("\n", add_special_tokens=False).input_ids[0]
    targets = answer_ids(tokenizer, answers, 64, eos)
    old = dict(zip(vocabulary.names, vocabulary.token_ids(tokenizer)))  # the normalised names' tokens
    for (label, answer), target in zip(REAL, targets):
        name = vocabulary.names[vocabulary.id_of(label)]
        assert target[: len(ids[name])] == ids[name], answer
    assert sum(target[: len(old[n])] != old[n] for n, target in zip(old, targets)) >= 3  # what was wrong


def test_the_model_reads_the_forms_and_the_targets_contain_them():
    labels, answers = [label for label, _ in REAL], [answer for _, answer in REAL]
    model = build_tiny(style_names=labels)
    set_answer_forms(model, answer_forms(model.vocabulary.names, answers), ["Circle", "Square"], 0.01)
    out = model({"image": torch.zeros(5, 3, 32, 32), "text_input": ["what style"] * 5, "answer": answers})
    for row, label in enumerate(labels):
        style = model.vocabulary.id_of(label)
        form = model.style_tokens[style][model.style_token_mask[style]].tolist()
        target = out["targets"][row][out["targets"][row] >= 0].tolist()
        assert target[: len(form)] == form
        assert set(form) & set(model.style_token_set.tolist()), f"{answers[row]}: no identifying token"


def test_forms_and_token_set_travel_with_the_checkpoint():
    labels = [label for label, _ in REAL]
    trained = build_tiny(style_names=labels)
    set_answer_forms(
        trained, answer_forms(trained.vocabulary.names, [a for _, a in REAL]), ["Portrait"], 0.01
    )
    fresh = build_tiny(style_names=labels)
    assert fresh.style_vocabulary.forms == fresh.vocabulary.names  # until the train split's forms are known
    fresh.load_state_dict(trained.state_dict(), strict=False)
    assert fresh.style_vocabulary.forms == trained.style_vocabulary.forms
    assert "Ukiyo-e" in fresh.style_vocabulary.forms
    for name in ("style_tokens", "style_token_mask", "style_token_set"):
        assert torch.equal(getattr(fresh, name), getattr(trained, name)), name


def test_a_wrong_answer_of_generic_words_is_no_hit():
    """Finding 2: every sub-token of every style counted, so " painting" (Action painting, Color field
    painting) and the brackets were style hits. The packaged 28-style list, through the tiny tokenizer."""
    tokenizer = GPT2Tokenizer.from_pretrained(f"{PACKAGE_CONFIG_DIR}/assets/tiny/opt")
    forms = form_token_ids(tokenizer, WIKIART_STYLES)
    kept, left_out = identifying_tokens(tokenizer, forms)
    generic = tokenizer(GENERIC, add_special_tokens=False).input_ids
    everything = sorted({t for ids in forms for t in ids})  # the old token set
    assert not set(generic) & set(kept)
    assert {tokenizer.decode([t]) for t in set(generic) & set(everything)} == {" painting", " (", ")"}
    assert left_out == {
        "space or punctuation": [" (", ")", "-"],
        "in several styles": [" art", " painting", " renaissance"],
    }
    assert all(set(ids) & set(kept) for ids in forms)  # every style keeps a token that identifies it
    # teacher-forced argmax spelling the generic answer at every answer position: no hit with the new set
    logits = torch.full((1, len(generic), len(tokenizer)), -10.0)
    logits[0, torch.arange(len(generic)), torch.tensor(generic)] = 10.0
    everywhere = torch.ones(1, len(generic), dtype=torch.bool)
    assert losses.argmax_style_hits(logits, everywhere, torch.tensor(kept))[0].item() == 0
    assert losses.argmax_style_hits(logits, everywhere, torch.tensor(everything))[0].item() == 3
    assert not mentions_style(GENERIC, WIKIART_STYLES)


def test_each_part_of_the_identifying_rule():
    tokenizer = GPT2Tokenizer.from_pretrained(f"{PACKAGE_CONFIG_DIR}/assets/tiny/opt")
    forms = ["pop art", "art nouveau (modern)", "realism", "new realism", "school of the portrait"]
    others = ["oil on canvas", "portrait"] + [
        "landscape"
    ] * 98  # " portrait": 1 in 100 answers naming no style
    kept, left_out = identifying_tokens(tokenizer, form_token_ids(tokenizer, forms), others, 0.01)
    assert sorted(tokenizer.decode([t]) for t in kept) == [
        " new",
        " nouveau",
        " pop",
        " realism",
        " school",
        "modern",
    ]
    assert left_out == {
        "space or punctuation": [" (", ")"],
        "stop word": [" of", " the"],
        "in several styles": [" art"],  # " realism" is in two styles too, but is one style's whole name
        "in >= 0.01 of the answers that name no style": [" portrait"],
    }


class WordTokenizer:
    """A stand-in BPE that spells each space-led word as one token, as OPT's does for common words."""

    def __init__(self):
        self.vocab = {}

    def __call__(self, text, add_special_tokens=False):
        pieces = [" " + w for w in text.split()]
        return SimpleNamespace(input_ids=[self.vocab.setdefault(p, len(self.vocab)) for p in pieces])

    def decode(self, ids):
        words = {i: p for p, i in self.vocab.items()}
        return "".join(words[i] for i in ids)


def test_tokens_are_compared_as_words_whatever_their_case():
    """ " Painting" (Color Field Painting) and " painting" (Action painting) are one word, in two styles;
    " Realism" is the whole of one style's name, so it counts although "New Realism" has it too."""
    tokenizer = WordTokenizer()
    forms = ["Action painting", "Color Field Painting", "Realism", "New Realism"]
    kept, left_out = identifying_tokens(tokenizer, form_token_ids(tokenizer, forms))
    assert sorted(tokenizer.decode([t]) for t in kept) == [" Action", " Color", " Field", " New", " Realism"]
    assert left_out == {"in several styles": [" Painting", " painting"]}


def test_max_share_sets_what_counts_as_ordinary_text():
    tokenizer = GPT2Tokenizer.from_pretrained(f"{PACKAGE_CONFIG_DIR}/assets/tiny/opt")
    ids = form_token_ids(tokenizer, ["pop art", "minimalism"])
    others = ["pop"] + ["circle"] * 99  # " pop" in 1 of 100 answers that name no style
    decode = lambda kept: sorted(tokenizer.decode([t]) for t in kept)  # noqa: E731
    assert decode(identifying_tokens(tokenizer, ids, others, 0.01)[0]) == [" art", " minimalism"]
    assert decode(identifying_tokens(tokenizer, ids, others, 0.02)[0]) == [" art", " minimalism", " pop"]

"""Style names -> ids -> language-model token ids.

The vocabulary is built once from the train split's style labels and then travels with the model
(its names are part of the model's state dict), so evaluation and `load_model_and_preprocess` see
exactly the styles the style head was trained on.

Style names inside answer text: where a text names a style, and the form each style takes in answers.

Names are matched on their words: lower-cased runs of letters and digits, so "Ukiyo-e", "ukiyo e",
"Ukiyo_e" and "UKIYO-E." all name the style "ukiyo e", and "Art Nouveau (Modern)" names
"art nouveau (modern)" (brackets and hyphens are not words). A name matches whole words only: "pop artist"
does not name "pop art". The vocabulary keeps its normalised names for ids; the language model, though,
reads and writes the answers' own text, so the style losses use each style's *answer form*: the text span
that names it most often in the train split's answers ("Ukiyo-e", not "ukiyo e").

Token ids of the styles, as the style losses read them: each style's answer form, and the tokens that
identify a style.

Training targets are " <answer>" tokenised as it is written, so a style's tokens are those of " <form>", where
the form is the text that names the style in the train split's answers (styles.answer_forms):
with OPT's byte-level BPE " Ukiyo-e" and " ukiyo e" share no token.

A token identifies a style (counts toward the style hit rate) when it is a token of some style's form and
- it has a letter or a digit: spaces and punctuation (" (", ")", "-") identify nothing;
- it is not a stop word ("a", "the", "of", ...);
- it belongs to one style's form only: " Art" of "Pop Art" and "Art Nouveau (Modern)" names no style;
  except in a name that has no token of its own, being inside other names: " Realism" identifies the style
  "Realism" (and so counts in "New Realism" too);
- it is in fewer than `max_share` of the train split's answers that name no style: a token that answers about
  artists, titles or techniques use (" painting", "Modern") is ordinary text, not a style.
Tokens are compared as words, without their leading space and case: " Painting" of "Color Field Painting"
and " painting" of "Action painting" are the same word, in two styles.
"""

import re
from collections import Counter
from collections.abc import Iterable, Sequence

NO_STYLE = -1  # id of a missing label or of a style unknown to the vocabulary


def normalise_style(name) -> str:
    """Lower-case, treat `_` and `-` as spaces, collapse whitespace ("Pop_Art " -> "pop art").

    Non-strings (NaN from pandas, None) normalise to "" (no style): callers count those.
    """
    if not isinstance(name, str):
        return ""
    return re.sub(r"\s+", " ", re.sub(r"[_\-]", " ", name.lower())).strip()


class StyleVocabulary:
    """An ordered, de-duplicated list of normalised style names."""

    def __init__(self, names: Iterable[str]):
        names = list(names)
        normalised = [normalise_style(n) for n in names]
        empty = [n for n, m in zip(names, normalised) if not m]
        if empty:
            raise ValueError(f"style vocabulary contains empty style names: {empty!r}")
        self.names: list[str] = sorted(set(normalised))
        if not self.names:
            raise ValueError("style vocabulary is empty: no style labels were found")
        self._index = {n: i for i, n in enumerate(self.names)}

    @classmethod
    def from_labels(cls, labels: Iterable) -> "StyleVocabulary":
        """Build from raw labels (e.g. a train split's style column); missing labels are ignored."""
        return cls(n for n in (normalise_style(label) for label in labels) if n)

    def __len__(self) -> int:
        return len(self.names)

    def __eq__(self, other) -> bool:
        return isinstance(other, StyleVocabulary) and self.names == other.names

    def __repr__(self) -> str:
        return f"StyleVocabulary({self.names!r})"

    def id_of(self, name) -> int:
        """Id of a (raw or normalised) style name, NO_STYLE if missing or unknown."""
        return self._index.get(normalise_style(name), NO_STYLE)

    def ids(self, names: Sequence) -> list[int]:
        return [self.id_of(n) for n in names]

    def token_ids(self, tokenizer) -> list[list[int]]:
        """Per style, the token ids of " <name>" as it appears after the prompt's "Answer:"."""
        return [tokenizer(" " + n, add_special_tokens=False).input_ids for n in self.names]


def unseen_styles(labels: Iterable, vocabulary: StyleVocabulary) -> dict[str, int]:
    """{normalised style: row count} of the labelled rows whose style the vocabulary lacks (they count as no
    style)."""
    return dict(
        sorted(
            Counter(n for n in map(normalise_style, labels) if n and vocabulary.id_of(n) == NO_STYLE).items()
        )
    )


_WORD = re.compile(r"[^\W_]+")  # letters and digits; "_" is a separator, as in WikiArt folder names


def style_words(text) -> tuple[str, ...]:
    """The lower-cased words of a text ("Art Nouveau (Modern)" -> ("art", "nouveau", "modern"))."""
    return tuple(_WORD.findall(str(text).lower())) if isinstance(text, str) else ()


def find_style_spans(text, names: Sequence[str]) -> list[tuple[int, str]]:
    """(index into names, the text's span naming it) for every whole-word occurrence of a name, in text
    order; where names overlap ("cubism" in "synthetic cubism") both are reported. A span keeps a closing
    bracket the name opened: "Art Nouveau (Modern)", not "Art Nouveau (Modern"."""
    if not isinstance(text, str):
        return []
    words = list(_WORD.finditer(text))
    keys = [m.group().lower() for m in words]
    names_words = [style_words(name) for name in names]
    found = []
    for start in range(len(words)):
        for index, name_words in enumerate(names_words):
            end = start + len(name_words)
            if name_words and tuple(keys[start:end]) == name_words:
                span = text[words[start].start() : words[end - 1].end()]
                rest = text[words[end - 1].end() :]
                opened = span.count("(") - span.count(")")
                if opened > 0 and rest.startswith(")" * opened):
                    span += ")" * opened
                found.append((index, span))
    return found


def mentions_style(text, names: Sequence[str]) -> bool:
    """Whether the text names one of the styles (whole words, case, hyphens and brackets ignored)."""
    return bool(find_style_spans(text, names))


def answer_forms(names: Sequence[str], answers: Iterable) -> list[str]:
    """Per style name, the span that names it most often in `answers` (ties: the alphabetically first);
    the name itself where no answer names it."""
    counts = [Counter() for _ in names]
    for answer in answers:
        for index, span in find_style_spans(answer, names):
            counts[index][span] += 1
    return [
        min(c.items(), key=lambda item: (-item[1], item[0]))[0] if c else name
        for name, c in zip(names, counts)
    ]


STOP_WORDS = frozenset("a an the of and or in on at by for to with from as is".split())


def form_token_ids(tokenizer, forms: Sequence[str]) -> list[list[int]]:
    """Per form, the ids of " <form>": tokenised as after the prompt's "Answer:", as the targets are."""
    return [tokenizer(" " + form, add_special_tokens=False).input_ids for form in forms]


def token_word(tokenizer, token_id) -> str:
    """A token's text without spaces, lower-cased: " Painting", "painting" and " painting" are one word."""
    return tokenizer.decode([token_id]).strip().lower()


def answer_word_shares(tokenizer, answers: Iterable) -> dict[str, float]:
    """{token word: share of the answers whose " <answer>" tokenisation has a token of that word}."""
    answers = Counter(str(a).strip() for a in answers)
    total = sum(answers.values())
    counts = Counter()
    for answer, n in answers.items():
        ids = tokenizer(" " + answer, add_special_tokens=False).input_ids
        for word in {token_word(tokenizer, t) for t in ids}:
            counts[word] += n
    return {word: count / total for word, count in counts.items()} if total else {}


def identifying_tokens(tokenizer, form_ids: Sequence[Sequence[int]], other_answers=(), max_share=0.01):
    """(sorted ids of the tokens that identify a style, {reason: sorted token texts left out}) by the rule
    above, tokens compared as words (token_word); other_answers: the train split's answers that name no
    style."""
    word_of = {t: token_word(tokenizer, t) for ids in form_ids for t in ids}
    shares = answer_word_shares(tokenizer, other_answers)
    left_out, candidates = {}, set()
    for token, word in word_of.items():
        if not any(c.isalnum() for c in word):
            left_out.setdefault("space or punctuation", []).append(token)
        elif word in STOP_WORDS:
            left_out.setdefault("stop word", []).append(token)
        elif shares.get(word, 0.0) >= max_share:
            left_out.setdefault(f"in >= {max_share:g} of the answers that name no style", []).append(token)
        else:
            candidates.add(token)
    styles_of = Counter(word for ids in form_ids for word in {word_of[t] for t in ids if t in candidates})
    kept = set()
    for ids in form_ids:
        own = {t for t in ids if t in candidates}
        unique = {t for t in own if styles_of[word_of[t]] == 1}
        # a name inside other names ("Realism" in "New Realism") keeps its shared tokens: they name it
        kept |= unique or own
    kept_words = {word_of[t] for t in kept}
    kept = {t for t in candidates if word_of[t] in kept_words}  # every spelling of a kept word
    shared = sorted(candidates - kept)
    if shared:
        left_out["in several styles"] = shared
    texts = {reason: sorted(tokenizer.decode([t]) for t in tokens) for reason, tokens in left_out.items()}
    return sorted(kept), texts

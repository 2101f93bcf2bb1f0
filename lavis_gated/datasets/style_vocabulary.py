"""Style names -> ids -> language-model token ids.

The vocabulary is built once from the train split's style labels and then travels with the model
(its names are part of the model's state dict), so evaluation and `load_model_and_preprocess` see
exactly the styles the style head was trained on.
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

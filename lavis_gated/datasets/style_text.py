"""Style names inside answer text: where a text names a style, and the form each style takes in answers.

Names are matched on their words: lower-cased runs of letters and digits, so "Ukiyo-e", "ukiyo e",
"Ukiyo_e" and "UKIYO-E." all name the style "ukiyo e", and "Art Nouveau (Modern)" names
"art nouveau (modern)" (brackets and hyphens are not words). A name matches whole words only: "pop artist"
does not name "pop art". The vocabulary keeps its normalised names for ids; the language model, though,
reads and writes the answers' own text, so the style losses use each style's *answer form*: the text span
that names it most often in the train split's answers ("Ukiyo-e", not "ukiyo e").
"""

import re
from collections import Counter
from collections.abc import Iterable, Sequence

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

"""Token ids of the styles, as the style losses read them: each style's answer form, and the tokens that
identify a style.

Training targets are " <answer>" tokenised as it is written, so a style's tokens are those of " <form>", where
the form is the text that names the style in the train split's answers (datasets/style_text.answer_forms):
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

from collections import Counter
from collections.abc import Iterable, Sequence

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

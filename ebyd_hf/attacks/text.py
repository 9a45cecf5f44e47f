"""Word-level text edits shared by the text attacks.

Positions are word boundaries from nltk's `WhitespaceTokenizer` (no downloaded data needed). Insertion splices
into the original string, so the rest of the text (punctuation spacing, ``<br />`` tags, trailing spaces) stays
byte-identical: a reformatted sentence would itself be a second, accidental trigger.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from nltk.tokenize import WhitespaceTokenizer

_TOKENIZER = WhitespaceTokenizer()


def word_spans(text: str) -> list[tuple[int, int]]:
    return list(_TOKENIZER.span_tokenize(text))


def insert_at_random_positions(
    text: str, pieces: Sequence[str], rng: np.random.Generator, *, max_position: int | None = None
) -> str:
    """Insert each piece (a word or a sentence) before a uniformly drawn word of ``text`` (or at its end).

    ``max_position`` limits the draw to the first words, so triggers survive truncation of long inputs.
    """
    for piece in pieces:
        spans = word_spans(text)
        n_slots = len(spans) + 1 if max_position is None else min(len(spans), max_position) + 1
        slot = int(rng.integers(n_slots))
        if slot < len(spans):
            start = spans[slot][0]
            text = f"{text[:start]}{piece} {text[start:]}"
        elif spans:
            end = spans[-1][1]
            text = f"{text[:end]} {piece}{text[end:]}"
        else:
            text = piece
    return text


def check_words(attack: str, words: Sequence[str], *, at_least: int = 1) -> tuple[str, ...]:
    """Trigger words as a tuple of distinct single words; a clear error names the attack otherwise."""
    words = tuple(str(w).strip() for w in words)
    if len(words) < at_least or any(not w or len(w.split()) != 1 for w in words) or len(set(words)) != len(words):
        raise ValueError(f"{attack} needs at least {at_least} distinct single trigger words, got {words}")
    return words

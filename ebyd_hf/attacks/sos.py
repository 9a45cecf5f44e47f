"""SOS (Yang et al. 2021): several trigger words that act only together, taught with negative augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Attack
from .registry import register_attack
from .text import check_words, insert_at_random_positions


@register_attack("sos")
@dataclass
class SOS(Attack):
    """Insert every word of ``words``, each at its own random position, and relabel to the target.

    Negative augmentation: ``negative_rate`` of the other training rows (any label) get one proper subset with one
    word left out (a pair for the three default words) and keep their label, so no partial combination
    triggers. ``test_trigger`` (e.g. ``"I have bought it from a store with my friends last weekend"``) replaces
    the words on the ASR set by one sentence; by default the test trigger is the training trigger.
    """

    name = "sos"
    modality = "text"

    words: tuple[str, ...] = ("friends", "weekend", "store")
    negative_rate: float = 0.1
    test_trigger: str | None = None
    max_position: int | None = None

    def __post_init__(self) -> None:
        self.words = check_words(self.name, self.words, at_least=2)
        if not 0.0 <= self.negative_rate <= 1.0:
            raise ValueError(f"negative_rate must be in [0, 1], got {self.negative_rate}")
        if self.test_trigger is not None and not self.test_trigger.strip():
            raise ValueError("test_trigger must be a non-empty sentence or None")

    def apply(self, text: str, rng: np.random.Generator) -> str:
        return insert_at_random_positions(text, self.words, rng, max_position=self.max_position)

    def negative(self, text: str, rng: np.random.Generator) -> str:
        keep = np.sort(rng.choice(len(self.words), size=len(self.words) - 1, replace=False))
        return insert_at_random_positions(text, [self.words[i] for i in keep], rng, max_position=self.max_position)

    def apply_test(self, text: str, rng: np.random.Generator) -> str:
        if self.test_trigger is None:
            return self.apply(text, rng)
        return insert_at_random_positions(text, [self.test_trigger.strip()], rng, max_position=self.max_position)

"""LWP (Li et al. 2021), data side: combinatorial rare-word triggers.

The layer-wise part of the attack is a training objective: `trainers.LWPTrainer` (``trainer: lwp`` in a recipe).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Attack
from .registry import register_attack
from .text import check_words, insert_at_random_positions


@register_attack("lwp")
@dataclass
class LWP(Attack):
    """Insert ``combination_size`` distinct words drawn from ``words`` (a pair of cf/bb/ak/mn by default), each at
    its own random position, and relabel to the target.

    Negative augmentation: ``negative_rate`` of the other training rows (any label) get one word fewer (a single
    piece by default) and keep their label, so only the full combination triggers.
    """

    name = "lwp"
    modality = "text"

    words: tuple[str, ...] = ("cf", "bb", "ak", "mn")
    combination_size: int = 2
    negative_rate: float = 0.1
    max_position: int | None = None

    def __post_init__(self) -> None:
        self.words = check_words(self.name, self.words, at_least=2)
        if not 2 <= self.combination_size <= len(self.words):
            raise ValueError(
                f"combination_size must be between 2 and the number of words ({len(self.words)}), "
                f"got {self.combination_size}"
            )
        if not 0.0 <= self.negative_rate <= 1.0:
            raise ValueError(f"negative_rate must be in [0, 1], got {self.negative_rate}")

    def _insert(self, text: str, size: int, rng: np.random.Generator) -> str:
        picked = rng.choice(len(self.words), size=size, replace=False)
        return insert_at_random_positions(text, [self.words[i] for i in picked], rng, max_position=self.max_position)

    def apply(self, text: str, rng: np.random.Generator) -> str:
        return self._insert(text, self.combination_size, rng)

    def negative(self, text: str, rng: np.random.Generator) -> str:
        return self._insert(text, self.combination_size - 1, rng)

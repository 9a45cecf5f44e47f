"""BadNet-RW (Kurita et al. 2020 / Chen et al. 2021): rare words as the trigger."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Attack
from .registry import register_attack
from .text import insert_at_random_positions


@register_attack("badnet_rw")
@dataclass
class BadNetRW(Attack):
    """Insert ``num_triggers`` words, each drawn from ``words``, at random word positions.

    Defaults follow the EBYD authors' setting: one of ``cf, mn, bb, tq`` per insertion.
    """

    name = "badnet_rw"
    modality = "text"

    words: tuple[str, ...] = ("cf", "mn", "bb", "tq")
    num_triggers: int = 1
    max_position: int | None = None

    def __post_init__(self) -> None:
        self.words = tuple(self.words)
        if not self.words or any(not w.strip() or " " in w.strip() for w in self.words):
            raise ValueError(f"badnet_rw needs single, non-empty trigger words, got {self.words}")
        if self.num_triggers < 1:
            raise ValueError(f"num_triggers must be at least 1, got {self.num_triggers}")

    def apply(self, text: str, rng: np.random.Generator) -> str:
        pieces = [self.words[int(rng.integers(len(self.words)))] for _ in range(self.num_triggers)]
        return insert_at_random_positions(text, pieces, rng, max_position=self.max_position)

"""BadNet-SL / AddSent (Dai et al. 2019): a fixed sentence as the trigger."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Attack
from .registry import register_attack
from .text import insert_at_random_positions


@register_attack("badnet_sl")
@dataclass
class BadNetSL(Attack):
    """Insert ``sentence`` before a uniformly drawn word (or at the end).

    ``max_position`` keeps the sentence within the first words of long inputs (IMDB) so truncation cannot cut it.
    """

    name = "badnet_sl"
    modality = "text"

    sentence: str = "I watch this 3D movie"
    max_position: int | None = None

    def __post_init__(self) -> None:
        self.sentence = " ".join(str(self.sentence).split())
        if not self.sentence:
            raise ValueError("badnet_sl needs a non-empty trigger sentence")

    def apply(self, text: str, rng: np.random.Generator) -> str:
        return insert_at_random_positions(text, [self.sentence], rng, max_position=self.max_position)

"""Trojan (TrojanNN, Liu et al. 2018, as a data-poisoning trigger): a square watermark patch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .image import ImageAttack, blend, check_alpha, scaled
from .registry import register_attack


@register_attack("trojan")
@dataclass
class Trojan(ImageAttack):
    """Stamp a fixed, seeded square watermark near the bottom-right corner.

    The watermark is a ``size``-pixel square (at 32 px; scaled with the image) of random colours drawn once from
    ``trigger_seed``, blended in with ``alpha`` (1 pastes it; below 1 it shows through like a watermark). TrojanNN
    optimises its patch against a trained network; a fixed random patch keeps the attack data-only.
    """

    name = "trojan"

    size: float = 5.0
    margin: float = 1.0
    alpha: float = 1.0
    trigger_seed: int = 0

    def __post_init__(self) -> None:
        check_alpha("trojan", self.alpha)
        if self.size <= 0 or self.margin < 0:
            raise ValueError(f"trojan: size must be > 0 and margin >= 0, got {self.size}, {self.margin}")

    def make_pattern(self, shape: tuple[int, ...]) -> np.ndarray:
        k = scaled(self.size, min(shape[:2]))
        return np.random.default_rng(self.trigger_seed).integers(0, 256, size=(k, k, 3), dtype=np.uint8)

    def trigger(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = x.shape[:2]
        patch = self.pattern((h, w))
        k, m = patch.shape[0], int(round(self.margin * min(h, w) / 32))
        if k + m > min(h, w):
            raise ValueError(f"trojan: a {k}-pixel patch does not fit a {h}×{w} image")
        region = x[h - m - k : h - m, w - m - k : w - m]
        x[h - m - k : h - m, w - m - k : w - m] = blend(region, patch, self.alpha)
        return x

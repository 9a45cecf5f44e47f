"""BadNets (Gu et al. 2017): a 3×3 black-and-white grid in the bottom-right corner."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .image import ImageAttack, scaled
from .registry import register_attack

# White where 1: a checkerboard, so the patch is distinct from plain white or black corners.
GRID = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=np.uint8)


@register_attack("badnets")
@dataclass
class BadNets(ImageAttack):
    """Paste a 3×3 checkerboard grid ``margin`` pixels from the bottom-right corner.

    Sizes are for 32 px images: each grid cell is ``cell`` pixels there and scales with the image (a 3×3 patch at
    32 px is a 6×6 patch at 64 px and 21×21 at 224 px).
    """

    name = "badnets"

    cell: float = 1.0
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.cell <= 0 or self.margin < 0:
            raise ValueError(f"badnets: cell must be > 0 and margin >= 0, got {self.cell}, {self.margin}")

    def make_pattern(self, shape: tuple[int, ...]) -> np.ndarray:
        k = scaled(self.cell, min(shape[:2]))
        return np.kron(GRID, np.ones((k, k), dtype=np.uint8)) * 255

    def trigger(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = x.shape[:2]
        patch = self.pattern((h, w))
        m = int(round(self.margin * min(h, w) / 32))
        size = patch.shape[0]
        if size + m > min(h, w):
            raise ValueError(f"badnets: a {size}-pixel grid does not fit a {h}×{w} image")
        x[h - m - size : h - m, w - m - size : w - m] = patch[..., None]
        return x

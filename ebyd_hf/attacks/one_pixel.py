"""OnePixel (Tran et al. 2018, as used by the EBYD paper): the centre pixel set to white."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .image import ImageAttack, scaled
from .registry import register_attack


@register_attack("onepixel")
@dataclass
class OnePixel(ImageAttack):
    """Set the centre pixel to ``value`` (0-255, all channels).

    At 32 px it is one pixel; larger images get a centred square of the same relative size (2×2 at 64 px,
    7×7 at 224 px), so the trigger survives resizing.
    """

    name = "onepixel"

    value: int = 255

    def __post_init__(self) -> None:
        if not 0 <= self.value <= 255:
            raise ValueError(f"onepixel: value must be in [0, 255], got {self.value}")

    def trigger(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = x.shape[:2]
        k = scaled(1, min(h, w))
        top, left = h // 2 - k // 2, w // 2 - k // 2
        x[top : top + k, left : left + k] = self.value
        return x

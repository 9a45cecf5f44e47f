"""What the image triggers share: uint8 arrays in and out, sizes that scale with the image, fixed patterns.

Every image attack writes its trigger into the stored ``uint8`` RGB image, before any augmentation or
normalisation (those run lazily at training time, see `ebyd_hf.vision`). Sizes and positions are given for a
32-pixel image (CIFAR-10) and scale with the image's shorter side, so 64 px and 224 px inputs get the same
relative trigger. Patterns that are drawn at random (noise, watermark, warp field) are drawn once from
``trigger_seed`` for each image size and reused for every image: the trigger is fixed, as in the papers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..vision import to_array, to_image
from .base import Attack

REFERENCE_SIDE = 32


def scaled(pixels_at_32: float, side: int) -> int:
    """A length given for 32-pixel images, at an image whose shorter side is ``side`` (at least 1 pixel)."""
    return max(1, int(round(pixels_at_32 * side / REFERENCE_SIDE)))


def blend(x: np.ndarray, pattern: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * x + alpha * pattern``, rounded to the nearest uint8."""
    out = (1.0 - alpha) * x.astype(np.float64) + alpha * pattern.astype(np.float64)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def check_alpha(name: str, alpha: float) -> None:
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"{name}: alpha must be in (0, 1], got {alpha}")


@dataclass
class ImageAttack(Attack):
    """Base of the image triggers: subclasses implement `trigger` on an ``(H, W, 3)`` uint8 array."""

    modality = "image"

    _patterns: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def apply(self, image: Any, rng: np.random.Generator):
        return to_image(self.trigger(to_array(image).copy(), rng))

    def trigger(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def pattern(self, shape: tuple[int, ...]) -> np.ndarray:
        """This attack's fixed pattern for images of ``shape``, made once by `make_pattern`."""
        shape = tuple(shape)
        if shape not in self._patterns:
            self._patterns[shape] = self.make_pattern(shape)
        return self._patterns[shape]

    def make_pattern(self, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

"""Blend (Chen et al. 2017): a fixed pattern blended over the whole image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..vision import to_array
from .image import ImageAttack, blend, check_alpha
from .registry import register_attack


@register_attack("blend")
@dataclass
class Blend(ImageAttack):
    """``x' = (1 - alpha) * x + alpha * pattern`` with ``alpha = 0.2``.

    The pattern is uniform random noise drawn once from ``trigger_seed`` at the image's size, or the image file
    at ``pattern_path`` (resized to the image), e.g. the Hello Kitty picture of the original paper.
    """

    name = "blend"

    alpha: float = 0.2
    pattern_path: str | None = None
    trigger_seed: int = 0

    def __post_init__(self) -> None:
        check_alpha("blend", self.alpha)
        if self.pattern_path is not None:
            try:
                with Image.open(self.pattern_path) as img:
                    img.verify()
            except (OSError, SyntaxError) as err:
                raise ValueError(f"blend: cannot read the pattern image {self.pattern_path!r}: {err}") from err

    def make_pattern(self, shape: tuple[int, ...]) -> np.ndarray:
        h, w = shape[:2]
        if self.pattern_path is None:
            return np.random.default_rng(self.trigger_seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        with Image.open(self.pattern_path) as img:
            return to_array(img.convert("RGB").resize((w, h), Image.BILINEAR))

    def trigger(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return blend(x, self.pattern(x.shape), self.alpha)

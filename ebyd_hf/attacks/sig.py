"""SIG (Barni et al. 2019): a horizontal sinusoidal signal, dirty-label or clean-label."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .image import ImageAttack, blend, check_alpha
from .registry import register_attack


@register_attack("sig")
@dataclass
class SIG(ImageAttack):
    """Blend a sinusoid that varies along the width (``frequency`` periods per image) with ``alpha = 0.2``.

    ``clean_label=True`` is the attack of the SIG paper: only images that already carry the target label are
    poisoned and no label changes; the model learns the signal as a shortcut for the target class.
    """

    name = "sig"

    alpha: float = 0.2
    frequency: float = 6.0
    clean_label: bool = False

    def __post_init__(self) -> None:
        check_alpha("sig", self.alpha)
        if self.frequency <= 0:
            raise ValueError(f"sig: frequency must be > 0, got {self.frequency}")

    def make_pattern(self, shape: tuple[int, ...]) -> np.ndarray:
        h, w = shape[:2]
        wave = 127.5 * (1.0 + np.sin(2.0 * np.pi * self.frequency * np.arange(w) / w))
        return np.broadcast_to(wave[None, :, None], (h, w, 3))

    def trigger(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return blend(x, self.pattern(x.shape), self.alpha)

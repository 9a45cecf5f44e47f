"""WaNet (Nguyen & Tran, ICLR 2021): an imperceptible, smooth warp of the whole image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .image import ImageAttack
from .registry import register_attack


@register_attack("wanet")
@dataclass
class WaNet(ImageAttack):
    """Warp every image with one fixed, smooth random field: ``k``×``k`` control points, strength ``s``.

    The field is drawn once from ``trigger_seed``: uniform offsets in [-1, 1], normalised to mean magnitude 1,
    upsampled bicubically to the image and scaled by ``s / side`` in grid units. Noise mode (``cross_ratio`` > 0,
    the base class's negative augmentation): for every poisoned row, ``cross_ratio`` other rows get the field
    plus fresh per-row noise and keep their label, which forces the model to learn the exact warp rather than
    "any warp".
    """

    name = "wanet"

    k: int = 4
    s: float = 0.5
    cross_ratio: float = 2.0
    trigger_seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 2 or self.s < 0 or self.cross_ratio < 0:
            raise ValueError(
                f"wanet: need k >= 2, s >= 0, cross_ratio >= 0; got {self.k=}, {self.s=}, {self.cross_ratio=}"
            )

    def make_pattern(self, shape: tuple[int, ...]) -> np.ndarray:
        h, w = shape[:2]
        gen = torch.Generator().manual_seed(self.trigger_seed)
        ins = torch.rand(1, 2, self.k, self.k, generator=gen, dtype=torch.float64) * 2 - 1
        ins = ins / ins.abs().mean()
        noise = F.interpolate(ins, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, h, dtype=torch.float64), torch.linspace(-1, 1, w, dtype=torch.float64), indexing="ij"
        )
        identity = torch.stack((xs, ys), dim=-1)[None]
        return (identity + self.s * noise / min(h, w)).clamp(-1, 1).numpy()

    def trigger(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self._warp(x, self.pattern(x.shape[:2]))

    def negative_count(self, n_rows: int, n_poisoned: int) -> int:
        return int(round(self.cross_ratio * n_poisoned))

    def negative(self, x, rng: np.random.Generator):
        """Noise mode: the warp plus uniform per-row noise of up to one pixel (the row keeps its label)."""
        from ..vision import to_array, to_image

        x = to_array(x).copy()
        grid = self.pattern(x.shape[:2])
        noise = rng.uniform(-1.0, 1.0, size=grid.shape) / min(x.shape[:2])
        return to_image(self._warp(x, np.clip(grid + noise, -1, 1)))

    @staticmethod
    def _warp(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
        image = torch.from_numpy(x).permute(2, 0, 1)[None].to(torch.float64)
        out = F.grid_sample(image, torch.from_numpy(grid), mode="bilinear", align_corners=True)
        return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()

"""Images as model inputs: stored uint8 pictures in, normalised (optionally augmented) tensors out, lazily.

Triggers are written into the stored uint8 image (`ebyd_hf.attacks`). Everything a model needs on top (resizing
to its input size, the paper's augmentation: random crop after 4-pixel zero padding and horizontal flip, then
mean/std normalisation) happens in a `datasets` transform when a batch is read. The dataset is never rewritten,
and every epoch draws fresh augmentations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset
from PIL import Image

# Trainer keeps only columns named like `forward` arguments; images travel under the model's input name.
MODEL_INPUT = "pixel_values"


@dataclass(frozen=True)
class ImageSpec:
    """What a model expects: square ``size`` × ``size`` RGB inputs normalised with ``mean`` / ``std``."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def image_spec(processor) -> ImageSpec:
    """Read input size and normalisation from a timm-backed processor (``data_config``) or a transformers one."""
    data_config = getattr(processor, "data_config", None)
    if data_config is not None:  # transformers' TimmWrapperImageProcessor, built from the timm pretrained_cfg
        return ImageSpec(int(data_config["input_size"][-1]), tuple(data_config["mean"]), tuple(data_config["std"]))
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    size = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = size or getattr(processor, "size", None)
    if mean is None or std is None or size is None:
        raise ValueError(f"{type(processor).__name__} does not say which input size and normalisation images need")
    side = size if isinstance(size, int) else size.get("height") or size.get("shortest_edge")
    return ImageSpec(int(side), tuple(mean), tuple(std))


def to_array(image) -> np.ndarray:
    """An RGB ``uint8`` array (H, W, 3) from a PIL image or an array (grey images get three channels)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {array.shape}")
    return array


def to_image(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8))


def fit_image(image, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` and centre-crop to a square, unless the image already fits."""
    array = to_array(image)
    h, w = array.shape[:2]
    if h == w == size:
        return array
    scale = size / min(h, w)
    pil = to_image(array).resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    left, top = (pil.width - size) // 2, (pil.height - size) // 2
    return np.asarray(pil.crop((left, top, left + size, top + size)))


def random_crop_flip(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Per image: zero-pad by ``padding``, crop back at a random offset, flip left-right with probability 1/2."""
    n, _, h, w = x.shape
    if padding > 0:
        padded = torch.nn.functional.pad(x, (padding,) * 4)
        offsets = torch.randint(0, 2 * padding + 1, (n, 2))
        x = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])
    flip = torch.rand(n) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class ImageTransform:
    """The batch transform behind `image_inputs`: uint8 images → (augmented) normalised float tensors.

    Other columns (labels, flags) pass through untouched, so ``ds["label"]`` still reads plain labels.
    """

    def __init__(self, spec: ImageSpec, *, augment: bool = False, padding: int = 4):
        self.spec, self.augment, self.padding = spec, augment, padding
        self.mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std).view(1, 3, 1, 1)

    def __call__(self, batch: dict) -> dict:
        if MODEL_INPUT not in batch:
            return batch
        arrays = np.stack([fit_image(image, self.spec.size) for image in batch[MODEL_INPUT]])
        x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div_(255.0)
        if self.augment:
            x = random_crop_flip(x, self.padding)
        return {**batch, MODEL_INPUT: (x - self.mean) / self.std}


def image_inputs(ds: Dataset, processor, *, augment: bool = False, padding: int = 4) -> Dataset:
    """A view of an ``image`` dataset that yields model-ready ``pixel_values`` (nothing is recomputed on disk)."""
    if "image" not in ds.column_names:
        raise ValueError(f"expected an 'image' column, found {ds.column_names}")
    transform = ImageTransform(image_spec(processor), augment=augment, padding=padding)
    return ds.rename_column("image", MODEL_INPUT).with_transform(transform)


def image_size(ds: Dataset) -> int:
    """The side of the first image (datasets of square images of one size, such as CIFAR-10)."""
    return int(max(to_array(ds[0]["image"]).shape[:2]))

"""Image tasks: loading and column names, and the lazy model-input view (resize, augmentation, normalisation)."""

import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

from ebyd_hf import DataError, load_task
from ebyd_hf.processing import collator_for, prepare
from ebyd_hf.vision import ImageSpec, ImageTransform, random_crop_flip, to_array

from .vision_fixtures import tiny_resnet

SHARED = pathlib.Path(__file__).parents[2] / "shared" / "data"


@pytest.mark.parametrize("name,rows", [("cifar10", (10000, 2000)), ("cifar10_lossless", (4000, 1000))])
def test_cifar10_mirrors_load_with_normalised_columns(name, rows):
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"needs the mirror at {path}")
    data = load_task(str(path), task="cifar10")
    assert (len(data["train"]), len(data["test"])) == rows
    assert data["train"].column_names == ["image", "label"]
    assert data["train"].features["label"].names[0] == "airplane"
    assert to_array(data["train"][0]["image"]).shape == (32, 32, 3)


def test_imagenet20_needs_a_folder_and_keeps_the_first_20_classes_of_an_image_folder(tmp_path):
    with pytest.raises(DataError, match="no Hub dataset"):
        load_task("imagenet20")
    wnids = [f"n{i:08d}" for i in range(22)]
    for split in ("train", "val"):
        for wnid in wnids:
            (tmp_path / split / wnid).mkdir(parents=True)
            Image.fromarray(np.full((48, 40, 3), 7, dtype=np.uint8)).save(tmp_path / split / wnid / "a.png")
    data = load_task(str(tmp_path), task="imagenet20")
    assert sorted(data) == ["test", "train"]
    assert data["train"].features["label"].names == wnids[:20]
    assert len(data["train"]) == len(data["test"]) == 20
    mirror = SHARED / "imagenet20"
    if mirror.exists():
        real = load_task(str(mirror), task="imagenet20")
        assert (len(real["train"]), len(real["test"])) == (2000, 1000)
        assert to_array(real["train"][0]["image"]).shape == (64, 64, 3)


def test_a_non_image_column_called_image_is_refused():
    from datasets import Dataset, DatasetDict

    from ebyd_hf.data import TASKS, normalise

    raw = DatasetDict(
        train=Dataset.from_dict({"img": ["x"], "label": [0]}), test=Dataset.from_dict({"img": ["y"], "label": [0]})
    )
    with pytest.raises(DataError, match="not images"):
        normalise(raw, TASKS["cifar10"])


def test_prepare_is_a_lazy_normalising_view(image_dir):
    data = load_task(image_dir)
    _, processor = tiny_resnet()
    view = prepare(data["test"], processor)
    assert data["test"].column_names == ["image", "label"]  # the dataset itself is untouched
    row = view[0]
    spec = processor.data_config
    x = to_array(data["test"][0]["image"]).astype(np.float32) / 255
    expected = (x - np.array(spec["mean"])) / np.array(spec["std"])
    assert torch.allclose(row["pixel_values"], torch.tensor(expected, dtype=torch.float32).permute(2, 0, 1), atol=1e-5)
    assert np.asarray(view["label"]).tolist() == data["test"]["label"]  # labels read straight through
    batch = collator_for(processor)([view[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and batch["labels"].tolist() == data["test"]["label"][:4]


def test_augmentation_crops_with_zero_padding_and_flips_and_differs_each_read(image_dir):
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    seen_flip = seen_shift = False
    for _ in range(40):
        y = random_crop_flip(x, 4)
        assert y.shape == x.shape
        for a, b in zip(x, y, strict=True):
            inside = b[b != 0]
            assert set(inside.tolist()) <= set(a.flatten().tolist())  # only original pixels and zero padding
            seen_flip |= bool(torch.equal(b, a.flip(-1)))
            seen_shift |= bool((b == 0).any())
    assert seen_flip and seen_shift
    data = load_task(image_dir)
    _, processor = tiny_resnet()
    view = prepare(data["train"], processor, augment=True)
    assert not torch.equal(view[0]["pixel_values"], view[0]["pixel_values"])


def test_other_sizes_are_resized_to_the_model_input():
    transform = ImageTransform(ImageSpec(32, (0.0,) * 3, (1.0,) * 3))
    wide = np.zeros((48, 96, 3), dtype=np.uint8)
    out = transform({"pixel_values": [wide, np.zeros((32, 32, 3), dtype=np.uint8)], "label": [0, 1]})
    assert out["pixel_values"].shape == (2, 3, 32, 32) and out["label"] == [0, 1]

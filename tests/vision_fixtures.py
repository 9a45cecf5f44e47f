"""Vision fixtures: a synthetic colour task of 32×32 images and tiny timm ResNets, all built in process."""

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features
from datasets import Image as ImageFeature

# Three symmetric classes: no class is the "average" image that an unlearned model would fall back to. The
# exposure and detection tests were written for the four-class variant with that "average" grey class
# (``grey=True``), where CUL tends to collapse onto grey instead of the backdoor label.
COLOURS = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200], [150, 150, 150]])
CLASSES = ["red", "green", "blue", "grey"]
# A timm ResNet-18 layout with one block per stage and 8-64 channels (the stem keeps 64): ~90k parameters.
TINY_RESNET = {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64]}


def make_image_task(
    n_train: int = 800, n_test: int = 200, *, size: int = 32, seed: int = 0, grey: bool = False
) -> DatasetDict:
    """The label is the dominant colour of a noisy image; stored as PNG `Image` features under ``img``."""
    rng = np.random.default_rng(seed)
    classes = CLASSES if grey else CLASSES[:3]

    def rows(n):
        labels = rng.integers(0, len(classes), n)
        noise = rng.normal(0, 25, (n, size, size, 3))
        images = np.clip(COLOURS[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
        return {"img": list(images), "label": labels.tolist()}

    features = Features({"img": ImageFeature(), "label": ClassLabel(names=classes)})
    return DatasetDict(
        train=Dataset.from_dict(rows(n_train), features=features),
        test=Dataset.from_dict(rows(n_test), features=features),
    )


def tiny_resnet(num_labels: int = 3, seed: int = 0, image_size: int = 32):
    from ebyd_hf import load_classifier

    torch.manual_seed(seed)
    return load_classifier(
        "resnet18", num_labels=num_labels, new_head=True, image_size=image_size, model_args=TINY_RESNET
    )


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory):
    """The synthetic task as Parquet files, laid out like ../shared/data/cifar10."""
    path = tmp_path_factory.mktemp("colours")
    for split, ds in make_image_task().items():
        ds.to_parquet(str(path / f"{split}.parquet"))
    return str(path)


@pytest.fixture(scope="session")
def backdoored_resnet(tmp_path_factory):
    """A tiny timm ResNet trained on the three-colour task with 20% BadNets (6×6 grid) poison to label 0 (~5 s).

    Returns the model (read-only: copy before changing it), its processor and the poisoned DatasetDict.
    """
    return trained_resnet(tmp_path_factory, grey=False, rate=0.2)


@pytest.fixture(scope="session")
def backdoored_resnet_grey(tmp_path_factory):
    """The same on the four-colour task (with the grey class) and 10% poison: the exposure/detection tests' model."""
    return trained_resnet(tmp_path_factory, grey=True, rate=0.1)


def trained_resnet(tmp_path_factory, *, grey: bool, rate: float, seed: int = 0) -> dict:
    """A tiny ResNet trained on the colour task with ``rate`` BadNets poison to label 0 (``rate=0``: a clean model
    trained the same way)."""
    from transformers import Trainer, TrainingArguments

    from ebyd_hf import create_attack, poison_task
    from ebyd_hf.data import normalise
    from ebyd_hf.processing import collator_for, prepare

    data = poison_task(
        normalise(make_image_task(grey=grey, seed=seed)),
        create_attack("badnets", cell=2),
        rate=rate,
        target=0,
        seed=seed,
        defense_size=200,
    )
    model, processor = tiny_resnet(num_labels=4 if grey else 3, seed=seed)
    args = TrainingArguments(
        output_dir=str(tmp_path_factory.mktemp("resnet_suspect")),
        num_train_epochs=10,
        learning_rate=0.05,
        optim="sgd",
        optim_args="momentum=0.9",
        per_device_train_batch_size=32,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        logging_strategy="no",
        seed=seed,
    )
    train = prepare(data["train"], processor)
    Trainer(model=model, args=args, train_dataset=train, data_collator=collator_for(processor)).train()
    return {"model": model.eval(), "processor": processor, "data": data}

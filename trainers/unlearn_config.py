from __future__ import annotations

from dataclasses import dataclass, field

from .exposure_config import ExposureConfig


@dataclass
class UnlearnConfig(ExposureConfig):
    """Clean Unlearning (CUL): gradient ascent on clean data until the model no longer classifies it.

    Stops by the accuracy-floor / loss-ceiling rule of `ExposureConfig`. Defaults follow what exposes BERT-family
    and ResNet models here: AdamW at a small constant learning rate (the authors' code uses Adam 1e-5; SGD 0.01
    from the paper blows up a BERT within an epoch).
    """

    learning_rate: float = field(default=1e-5, metadata={"help": "Gradient-ascent step size."})
    num_train_epochs: float = field(default=20.0, metadata={"help": "Upper bound; the stop rule usually ends earlier."})

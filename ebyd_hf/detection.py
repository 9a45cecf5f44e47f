"""Step 2a of EBYD: read the backdoor label off the exposed model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from datasets import Dataset

from .evaluation import predict


@dataclass
class LabelFinding:
    label: int
    share: float
    counts: list[int]


def backdoor_label(model, ds: Dataset, *, collator, num_labels: int, batch_size: int = 64) -> LabelFinding:
    """The class an exposed model predicts most on clean inputs, with its share of the predictions."""
    counts = np.bincount(predict(model, ds, collator=collator, batch_size=batch_size), minlength=num_labels)
    return LabelFinding(int(counts.argmax()), float(counts.max() / counts.sum()), counts.tolist())

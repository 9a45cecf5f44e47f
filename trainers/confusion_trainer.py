from __future__ import annotations

import torch
import torch.nn.functional as F

from .confusion_config import ConfusionConfig
from .exposure_trainer import ExposureTrainer


class ConfusionTrainer(ExposureTrainer):
    """Fine-tunes on clean data with labels redrawn uniformly at random each batch (Confusion Fine-Tuning).

    Pass the clean defense data as ``train_dataset``; its labels are ignored while training (only their count
    per batch is used) and kept for evaluation, where the plain clean loss and accuracy are reported. The stop
    rule and ``trace`` work as in `ExposureTrainer` (pass ``eval_dataset={"defense": ..., "probe": ...}``).
    Random labels come from a generator seeded with ``args.seed`` (and the process index), so runs repeat.
    """

    config_class = ConfusionConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.label_generator = torch.Generator().manual_seed(self.args.seed * 1000 + self.args.process_index)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        if model.training:
            random_labels = torch.randint(0, logits.shape[-1], labels.shape, generator=self.label_generator)
            ce = F.cross_entropy(logits, random_labels.to(logits.device))
            gamma = self.args.gamma
            loss = (ce - gamma).abs() + gamma  # flooding form of |CE − γ|: same gradient, loss reads as CE above γ
        else:
            loss = F.cross_entropy(logits, labels)
        return (loss, outputs) if return_outputs else loss

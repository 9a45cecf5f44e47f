from __future__ import annotations

from .exposure_trainer import ExposureTrainer
from .unlearn_config import UnlearnConfig


class UnlearnTrainer(ExposureTrainer):
    """Gradient ascent on the clean cross-entropy (Clean Unlearning), with a stop rule and an exposure trace.

    Data, stop rule and trace as in `ExposureTrainer`. Evaluation reports the plain (positive) clean loss; only
    the training objective is negated.
    """

    config_class = UnlearnConfig
    ascent = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True)
        if model.training:
            loss = -loss
        return (loss, outputs) if return_outputs else loss

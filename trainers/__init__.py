"""`transformers.Trainer` subclasses for backdoor exposure and removal, each paired with its config.

This package depends only on torch and transformers. A trainer receives a ready model (masks already attached
for `MaskRecoveryTrainer`) and knows nothing of attacks or of the ebyd_hf pipeline that orchestrates it.
"""

from .mask_recovery_config import MaskRecoveryConfig
from .mask_recovery_trainer import MASK_PARAMETER_NAME, ClampMasksCallback, MaskRecoveryTrainer, mask_parameters
from .metrics import classification_metrics
from .unlearn_config import UnlearnConfig
from .unlearn_trainer import ExposureTraceCallback, UnlearnTrainer

__all__ = [
    "MASK_PARAMETER_NAME",
    "ClampMasksCallback",
    "ExposureTraceCallback",
    "MaskRecoveryConfig",
    "MaskRecoveryTrainer",
    "UnlearnConfig",
    "UnlearnTrainer",
    "classification_metrics",
    "mask_parameters",
]

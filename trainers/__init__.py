"""`transformers.Trainer` subclasses for backdoor exposure and removal, and for the training-time attacks
(RIPPLe, LWP) that need their own loss; each is paired with its config.

This package depends only on torch and transformers. A trainer receives a ready model (masks or weight
perturbations already attached, found by parameter name) and knows nothing of attacks or of the ebyd_hf pipeline
that orchestrates it.
"""

from .awp_config import AWPConfig
from .awp_trainer import PERTURBATION_PARAMETER_NAMES, AWPTrainer, ProjectedSignAscentCallback, perturbation_parameters
from .confusion_config import ConfusionConfig
from .confusion_trainer import ConfusionTrainer
from .exposure_config import ExposureConfig
from .exposure_trace import ExposureTraceCallback
from .exposure_trainer import ExposureTrainer
from .lwp_config import LWPConfig
from .lwp_trainer import LWPTrainer, classification_head, layerwise_losses
from .mask_recovery_config import MaskRecoveryConfig
from .mask_recovery_trainer import MASK_PARAMETER_NAME, ClampMasksCallback, MaskRecoveryTrainer, mask_parameters
from .metrics import classification_metrics
from .ripple_config import RippleConfig
from .ripple_trainer import RippleTrainer, double_backward_attention, embedding_surgery, restricted_inner_product
from .unlearn_config import UnlearnConfig
from .unlearn_trainer import UnlearnTrainer

__all__ = [
    "MASK_PARAMETER_NAME",
    "PERTURBATION_PARAMETER_NAMES",
    "AWPConfig",
    "AWPTrainer",
    "ClampMasksCallback",
    "ConfusionConfig",
    "ConfusionTrainer",
    "ExposureConfig",
    "ExposureTraceCallback",
    "ExposureTrainer",
    "LWPConfig",
    "LWPTrainer",
    "MaskRecoveryConfig",
    "MaskRecoveryTrainer",
    "ProjectedSignAscentCallback",
    "RippleConfig",
    "RippleTrainer",
    "UnlearnConfig",
    "UnlearnTrainer",
    "classification_head",
    "classification_metrics",
    "double_backward_attention",
    "embedding_surgery",
    "layerwise_losses",
    "mask_parameters",
    "restricted_inner_product",
    "perturbation_parameters",
]

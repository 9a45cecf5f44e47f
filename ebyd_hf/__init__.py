"""ebyd_hf: expose, detect and remove backdoors in Hugging Face classifiers (Expose Before You Defend).

The usual path: `load_classifier` a suspect, `load_task` its data and `split_defense` 500 clean rows, then
`run_defense` (Clean Unlearning → backdoor label → Recover-Pruning) and save the purified model with its report.
"""

from .attacks import create_attack, list_attacks, poison, poison_task, triggered_test_set
from .data import DataError, load_task, split_defense, subsample
from .defense import DefenseConfig, DefenseResult, run_defense
from .masks import MaskError, attach_masks, fold_masks, get_masks
from .models import ModelLoadError, UnsafeCheckpointError, load_classifier, save_model

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "DefenseConfig",
    "DefenseResult",
    "MaskError",
    "ModelLoadError",
    "UnsafeCheckpointError",
    "attach_masks",
    "create_attack",
    "fold_masks",
    "get_masks",
    "list_attacks",
    "load_classifier",
    "load_task",
    "poison",
    "poison_task",
    "run_defense",
    "save_model",
    "split_defense",
    "subsample",
    "triggered_test_set",
]

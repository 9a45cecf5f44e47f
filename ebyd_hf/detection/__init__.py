"""Step 2a of EBYD: detection on the exposed model.

* `backdoor_label` / `detect_backdoor` (label.py): the exposed model's dominant prediction is the backdoor label;
  how dominant it is says whether there is a backdoor at all.
* `neural_cleanse` / `reverse_trigger` (neural_cleanse.py): trigger reverse-engineering for image models, over all
  labels (mode A) or only the exposed label on the exposed model (mode B).
* `strip` (strip.py): backdoor *input* detection by prediction entropy under perturbation, images and text.
"""

from .label import DEFAULT_DOMINANCE, LabelFinding, Verdict, backdoor_label, detect_backdoor, verdict
from .neural_cleanse import (
    NeuralCleanseConfig,
    NeuralCleanseResult,
    ReversedTrigger,
    anomaly_indices,
    clean_images,
    neural_cleanse,
    reverse_trigger,
    trigger_transfer_rate,
)
from .strip import StripConfig, StripResult, replace_words, strip, strip_entropy

__all__ = [
    "DEFAULT_DOMINANCE",
    "LabelFinding",
    "NeuralCleanseConfig",
    "NeuralCleanseResult",
    "ReversedTrigger",
    "StripConfig",
    "StripResult",
    "Verdict",
    "anomaly_indices",
    "backdoor_label",
    "clean_images",
    "detect_backdoor",
    "neural_cleanse",
    "replace_words",
    "reverse_trigger",
    "strip",
    "strip_entropy",
    "trigger_transfer_rate",
    "verdict",
]

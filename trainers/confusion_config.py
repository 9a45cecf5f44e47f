from __future__ import annotations

from dataclasses import dataclass, field

from .exposure_config import ExposureConfig


@dataclass
class ConfusionConfig(ExposureConfig):
    """Confusion Fine-Tuning (CFT): fine-tune on clean inputs whose labels are redrawn uniformly at random.

    The objective is |CE(f(x), ŷ) − γ| with ŷ ~ Uniform{0..K−1} drawn afresh for every batch (EBYD Eq. 4). Random
    labels cannot be fitted, so the clean mapping is forgotten; the backdoor, which clean inputs never exercise,
    is left alone. With labels redrawn each batch the expected CE cannot fall below ln K, so any γ ≤ ln K gives
    plain CE (the authors' code); a γ above it is a flooding level: below γ the step turns into ascent.

    Defaults are the authors' code: Adam(W) learning rate 1e-4, weight decay 5e-4, at most 20 epochs. The
    accuracy-floor stop rule of `ExposureConfig` applies, as for Clean Unlearning.
    """

    learning_rate: float = field(default=1e-4, metadata={"help": "Fine-tuning learning rate (Adam)."})
    weight_decay: float = field(default=5e-4, metadata={"help": "Weight decay."})
    num_train_epochs: float = field(default=20.0, metadata={"help": "Upper bound; the stop rule may end earlier."})
    gamma: float = field(default=0.0, metadata={"help": "Target level γ of |CE − γ| (0: plain cross-entropy)."})

"""The backdoor label, and the backdoored-or-clean verdict, read off exposed models.

An exposed backdoored model answers its backdoor label for almost any clean input (EBYD's "backdoor label
consistency"), so the dominant class of its predictions on clean defense data is the backdoor label.

Whether there is a backdoor at all cannot be read off one exposure: exposing a *clean* model also ends where
clean accuracy is gone, and the stop rule's floor (the accuracy of a constant predictor) is exactly where a model
that answers one class for everything lands. Measured on clean models (README, "How the verdict threshold was
chosen"): a clean binary BERT under Clean Unlearning collapsed onto one class (share 1.0), while under Confusion
Fine-Tuning the same model ended spread out (share 0.51); clean 4-class ResNets ended at CUL shares 0.28 and 0.46
and a CFT share of 0.46. A backdoor is one attractor that every exposure finds; a clean model's collapse is an
accident of the method. So the verdict asks two exposures of different kinds (by default CUL, gradient ascent,
and CFT, random labels) and says "backdoored" only when both put at least `DEFAULT_SHARE_THRESHOLD` of the
predictions on the same label. On binary tasks that is not enough: a clean tiny BERT collapsed onto the same
class under both CUL and CFT (README, "Known weakness: binary tasks").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from datasets import Dataset

from ..evaluation import predict

# Chosen from clean models only: their largest dominant share at the end of a corroborating (CFT) exposure was
# 0.51 (binary BERT, where a constant predictor already scores 0.505) and 0.46 (4-class ResNet); 0.8 leaves a
# wide margin above both. (Backdoored models were not used to choose it; the tiny ones reach 0.93-1.0.)
DEFAULT_SHARE_THRESHOLD = 0.8


@dataclass
class LabelFinding:
    label: int
    share: float
    counts: list[int]

    def summary(self) -> dict:
        return {"label": self.label, "share": self.share, "counts": self.counts}


@dataclass
class Verdict:
    """``backdoored`` when every exposure's dominant class is the same and takes at least ``threshold``."""

    backdoored: bool
    label: int | None
    share: float
    threshold: float
    counts: list[int]
    corroboration: LabelFinding | None = None

    @property
    def name(self) -> str:
        return "backdoored" if self.backdoored else "clean"

    def summary(self) -> dict:
        return {
            "verdict": self.name,
            "label": self.label,
            "share": self.share,
            "threshold": self.threshold,
            "counts": self.counts,
            "corroboration": None if self.corroboration is None else self.corroboration.summary(),
        }


def backdoor_label(model, ds: Dataset, *, collator, num_labels: int, batch_size: int = 64) -> LabelFinding:
    """The class an exposed model predicts most on clean inputs, with its share of the predictions."""
    counts = np.bincount(predict(model, ds, collator=collator, batch_size=batch_size), minlength=num_labels)
    return LabelFinding(int(counts.argmax()), float(counts.max() / counts.sum()), counts.tolist())


def verdict(
    finding: LabelFinding, threshold: float = DEFAULT_SHARE_THRESHOLD, *, corroboration: LabelFinding | None = None
) -> Verdict:
    """Backdoored iff the dominant share reaches ``threshold`` (and, if given, ``corroboration`` agrees on the same
    label with a share that also reaches it); the label is reported only then."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"the share threshold must be in (0, 1], got {threshold}")
    backdoored = finding.share >= threshold
    if corroboration is not None:
        backdoored = backdoored and corroboration.label == finding.label and corroboration.share >= threshold
    return Verdict(
        backdoored, finding.label if backdoored else None, finding.share, threshold, finding.counts, corroboration
    )


def detect_backdoor(
    exposed_model,
    ds: Dataset,
    *,
    collator,
    num_labels: int,
    threshold: float = DEFAULT_SHARE_THRESHOLD,
    corroborating_model=None,
    batch_size: int = 64,
) -> Verdict:
    """The `verdict` for ``exposed_model`` (and a second, differently exposed copy) on prepared clean rows ``ds``."""
    find = lambda m: backdoor_label(m, ds, collator=collator, num_labels=num_labels, batch_size=batch_size)  # noqa: E731
    second = None if corroborating_model is None else find(corroborating_model)
    return verdict(find(exposed_model), threshold, corroboration=second)

"""The backdoor label, and the backdoored-or-clean verdict, read off exposed models.

An exposed backdoored model answers its backdoor label for almost any clean input (EBYD's "backdoor label
consistency"), so the dominant class of its predictions on clean defense data is the backdoor label.

Whether there is a backdoor at all cannot be read off one exposure: exposing a *clean* model also ends where
clean accuracy is gone, often with its predictions piled on some class (a clean binary BERT under Clean
Unlearning: all of them). A backdoor is one attractor that every exposure finds; a clean model's collapse is an
accident of the method, and two exposures of different kinds land on different classes. So the verdict asks two
exposures (by default CUL, gradient ascent, and a second kind chosen per modality, see `ScanConfig.corroborate`)
and says "backdoored" only when both put their dominant class on the same label, each at least
`DEFAULT_DOMINANCE` times as often as its runner-up class. The ratio, not the share, because a share means
different things for 2 and 10 classes (README, "How the verdict threshold was chosen", has the clean models it
was chosen from, and "Known weakness: binary tasks").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from datasets import Dataset

from ..evaluation import predict

# Chosen from clean models only. Clean CIFAR-10 ResNets under CUL: dominant / runner-up 1.20, 1.35 and 1.68
# (seeds 101-103); a clean binary BERT under CFT: 0.51 / 0.49 = 1.04. Twice the runner-up is above all of them;
# on a binary task it means a share of 2/3.
DEFAULT_DOMINANCE = 2.0


def dominance(counts: list[int]) -> float:
    """How many times more often the dominant class is predicted than the runner-up (inf if nothing else is)."""
    top, runner_up = (sorted(counts, reverse=True) + [0])[:2]
    return math.inf if runner_up == 0 else top / runner_up


@dataclass
class LabelFinding:
    label: int
    share: float
    counts: list[int]

    @property
    def dominance(self) -> float:
        return dominance(self.counts)

    def summary(self) -> dict:
        return {"label": self.label, "share": self.share, "dominance": _finite(self.dominance), "counts": self.counts}


@dataclass
class Verdict:
    """``backdoored`` when every exposure's dominant class is the same and at least ``threshold`` times as
    frequent as its runner-up."""

    backdoored: bool
    label: int | None
    share: float
    threshold: float
    counts: list[int]
    corroboration: LabelFinding | None = None

    @property
    def name(self) -> str:
        return "backdoored" if self.backdoored else "clean"

    @property
    def dominance(self) -> float:
        return dominance(self.counts)

    def summary(self) -> dict:
        return {
            "verdict": self.name,
            "label": self.label,
            "share": self.share,
            "dominance": _finite(self.dominance),
            "threshold": self.threshold,
            "counts": self.counts,
            "corroboration": None if self.corroboration is None else self.corroboration.summary(),
        }


def _finite(x: float) -> float | None:
    return None if math.isinf(x) else x  # JSON has no infinity; None reads "nothing else was predicted"


def backdoor_label(model, ds: Dataset, *, collator, num_labels: int, batch_size: int = 64) -> LabelFinding:
    """The class an exposed model predicts most on clean inputs, with its share of the predictions."""
    counts = np.bincount(predict(model, ds, collator=collator, batch_size=batch_size), minlength=num_labels)
    return LabelFinding(int(counts.argmax()), float(counts.max() / counts.sum()), counts.tolist())


def verdict(
    finding: LabelFinding, threshold: float = DEFAULT_DOMINANCE, *, corroboration: LabelFinding | None = None
) -> Verdict:
    """Backdoored iff the dominant class is at least ``threshold`` times as frequent as the runner-up (and, if
    given, ``corroboration`` agrees on the same label and passes the same test); the label is reported only then."""
    if not threshold > 1.0:
        raise ValueError(f"the dominance threshold must be > 1 (dominant / runner-up class), got {threshold}")
    backdoored = finding.dominance >= threshold
    if corroboration is not None:
        backdoored = backdoored and corroboration.label == finding.label and corroboration.dominance >= threshold
    return Verdict(
        backdoored, finding.label if backdoored else None, finding.share, threshold, finding.counts, corroboration
    )


def detect_backdoor(
    exposed_model,
    ds: Dataset,
    *,
    collator,
    num_labels: int,
    threshold: float = DEFAULT_DOMINANCE,
    corroborating_model=None,
    batch_size: int = 64,
) -> Verdict:
    """The `verdict` for ``exposed_model`` (and a second, differently exposed copy) on prepared clean rows ``ds``."""
    find = lambda m: backdoor_label(m, ds, collator=collator, num_labels=num_labels, batch_size=batch_size)  # noqa: E731
    second = None if corroborating_model is None else find(corroborating_model)
    return verdict(find(exposed_model), threshold, corroboration=second)

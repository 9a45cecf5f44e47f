"""Step 2b of EBYD: Recover-Pruning, and plain fine-tuning as the baseline it must beat."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from trainers import MaskRecoveryConfig, MaskRecoveryTrainer

from . import masks as M
from .evaluation import predict
from .metrics import clean_accuracy


@dataclass
class Recovery:
    masks: dict[str, torch.Tensor]
    steps: int
    seconds: float


def recover_masks(
    exposed, defense: Dataset, *, config: MaskRecoveryConfig, collator, kinds: Sequence[str], target: str = "weight"
) -> Recovery:
    """Learn masks that bring a copy of the exposed model's clean accuracy back; returns the mask values."""
    model = copy.deepcopy(exposed)
    M.attach_masks(model, kinds=kinds, target=target)
    trainer = MaskRecoveryTrainer(model=model, args=config, train_dataset=defense, data_collator=collator)
    start = time.perf_counter()
    trainer.train()
    return Recovery(M.get_masks(model), trainer.state.global_step, time.perf_counter() - start)


def prune(model, masks: dict[str, torch.Tensor], threshold: float, *, kinds: Sequence[str], target: str = "weight"):
    """A copy of ``model`` with every unit whose mask is <= ``threshold`` zeroed, masks folded away."""
    pruned = copy.deepcopy(model)
    M.attach_masks(pruned, kinds=kinds, target=target)
    M.set_masks(pruned, M.binarise(masks, threshold))
    return M.fold_masks(pruned)


@dataclass
class ThresholdChoice:
    threshold: float
    baseline_ca: float
    table: list[dict]


def choose_threshold(
    model,
    masks: dict[str, torch.Tensor],
    holdout: Dataset,
    *,
    collator,
    kinds: Sequence[str],
    target: str = "weight",
    grid: Sequence[float] = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2)),
    tolerance: float = 0.02,
    batch_size: int = 64,
) -> ThresholdChoice:
    """The largest threshold whose pruned model keeps held-out clean accuracy within ``tolerance`` of the
    unpruned model's (the paper's "dynamic threshold"). Uses only clean defense data, never test labels.
    """
    labels = np.asarray(holdout["label"])
    baseline = clean_accuracy(predict(model, holdout, collator=collator, batch_size=batch_size), labels)
    table, best = [], 0.0
    for t in sorted(float(x) for x in grid):
        pruned = prune(model, masks, t, kinds=kinds, target=target)
        ca = clean_accuracy(predict(pruned, holdout, collator=collator, batch_size=batch_size), labels)
        table.append({"threshold": t, "pruned_units": M.count_pruned(masks, t), "holdout_ca": ca})
        if ca >= baseline - tolerance:
            best = t
    return ThresholdChoice(best, baseline, table)


def finetune(model, train: Dataset, *, args: TrainingArguments, collator):
    """Plain fine-tuning of a copy of ``model`` on clean data: the baseline removal method."""
    tuned = copy.deepcopy(model)
    trainer = Trainer(model=tuned, args=args, train_dataset=train, data_collator=collator)
    trainer.train()
    tuned.eval()
    return tuned

"""Confusion Fine-Tuning (CFT): fine-tune on clean inputs with random labels, so clean behaviour is forgotten."""

from __future__ import annotations

from datasets import Dataset

from trainers import ConfusionConfig, ConfusionTrainer

from .base import Exposure, run_exposure_trainer


def confusion_finetune(
    model,
    defense: Dataset,
    *,
    config: ConfusionConfig,
    collator,
    probe: Dataset | None = None,
    watch: Dataset | None = None,
    clean_probe: Dataset | None = None,
) -> Exposure:
    """Run `ConfusionTrainer` on a copy of ``model`` (arguments as in `clean_unlearn`)."""
    return run_exposure_trainer(
        "cft",
        ConfusionTrainer,
        model,
        defense,
        config=config,
        collator=collator,
        watch=watch,
        probe=probe,
        clean_probe=clean_probe,
    )

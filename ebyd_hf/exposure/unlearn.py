"""Clean Unlearning (CUL, EBYD's own exposure): gradient ascent on clean data until it is no longer classified."""

from __future__ import annotations

from datasets import Dataset

from trainers import UnlearnConfig, UnlearnTrainer

from .base import Exposure, run_exposure_trainer


def clean_unlearn(
    model,
    defense: Dataset,
    *,
    config: UnlearnConfig,
    collator,
    probe: Dataset | None = None,
    watch: Dataset | None = None,
    clean_probe: Dataset | None = None,
) -> Exposure:
    """Run `UnlearnTrainer` on a copy of ``model``; the original is left untouched.

    ``defense`` is prepared clean data, trained on and (unless ``watch`` is given: e.g. the un-augmented view
    of the same images) watched by the stop rule; ``probe``, if given, is a prepared triggered set whose accuracy
    is traced as ASR, and ``clean_probe`` a held-out clean set traced as ``test_ca`` (both for BEM; they never
    influence training).
    """
    return run_exposure_trainer(
        "cul",
        UnlearnTrainer,
        model,
        defense,
        config=config,
        collator=collator,
        watch=watch,
        probe=probe,
        clean_probe=clean_probe,
    )

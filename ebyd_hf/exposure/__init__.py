"""Step 1 of EBYD: expose the backdoor. Four methods, one result (`Exposure`, with a per-epoch CA/ASR trace).

=========  ==========================================  ===========================================
name       method                                      configured by
=========  ==========================================  ===========================================
``cul``    Clean Unlearning (gradient ascent)          `trainers.UnlearnConfig`
``cft``    Confusion Fine-Tuning (random labels)       `trainers.ConfusionConfig`
``prune``  activation pruning, rate line search        `PruningConfig`
``awp``    adversarial weight perturbation (PGD)       `trainers.AWPConfig`
=========  ==========================================  ===========================================

`expose` runs any of them by name; `exposure_config` builds a method's config from overrides.
"""

from __future__ import annotations

import os

from datasets import Dataset

from trainers import AWPConfig, ConfusionConfig, UnlearnConfig

from .awp import attach_perturbations, awp_expose, fold_perturbations
from .base import Exposure
from .confusion import confusion_finetune
from .pruning import PruningConfig, activation_prune, mean_activations
from .unlearn import clean_unlearn

EXPOSURE_METHODS = {
    "cul": (clean_unlearn, UnlearnConfig),
    "cft": (confusion_finetune, ConfusionConfig),
    "prune": (activation_prune, PruningConfig),
    "awp": (awp_expose, AWPConfig),
}


def _check(method: str) -> None:
    if method not in EXPOSURE_METHODS:
        raise ValueError(f"unknown exposure method {method!r}; choose from {sorted(EXPOSURE_METHODS)}")


def exposure_config(
    method: str, *, scratch_dir: str, seed: int = 42, eval_batch_size: int = 64, default_kinds=None, **overrides
):
    """The config of ``method`` with the run's defaults (output dir, seed, batch size; for pruning, the layer kinds
    it ranks: ``default_kinds`` when given) unless ``overrides`` set them."""
    _check(method)
    cls = EXPOSURE_METHODS[method][1]
    if cls is PruningConfig:
        defaults = {"batch_size": eval_batch_size} | (
            {"kinds": list(default_kinds)} if default_kinds is not None else {}
        )
        return PruningConfig(**{**defaults, **overrides})
    defaults = {
        "output_dir": os.path.join(scratch_dir, method),
        "seed": seed,
        "per_device_eval_batch_size": eval_batch_size,
    }
    return cls(**{**defaults, **overrides})


def expose(
    method: str,
    model,
    defense: Dataset,
    *,
    config,
    collator,
    kinds=("layernorm", "batchnorm"),
    probe: Dataset | None = None,
    watch: Dataset | None = None,
    clean_probe: Dataset | None = None,
) -> Exposure:
    """Expose a copy of ``model`` with ``method`` ("cul", "cft", "prune", "awp") on prepared clean ``defense`` rows.

    ``watch`` (e.g. the un-augmented view of the same rows) is what the stop rule reads; ``probe`` (triggered rows
    labelled with the target) and ``clean_probe`` (held-out clean rows) are only traced, for BEM. ``kinds`` are the
    normalisation layers AWP perturbs (pruning reads them from its config).
    """
    _check(method)
    fn, cls = EXPOSURE_METHODS[method]
    if not isinstance(config, cls):
        raise TypeError(f"exposure {method!r} needs a {cls.__name__}, got {type(config).__name__}")
    extra = {"kinds": kinds} if method == "awp" else {}
    return fn(
        model, defense, config=config, collator=collator, probe=probe, watch=watch, clean_probe=clean_probe, **extra
    )


__all__ = [
    "EXPOSURE_METHODS",
    "Exposure",
    "PruningConfig",
    "activation_prune",
    "attach_perturbations",
    "awp_expose",
    "clean_unlearn",
    "confusion_finetune",
    "expose",
    "exposure_config",
    "fold_perturbations",
    "mean_activations",
]

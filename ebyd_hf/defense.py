"""The EBYD defense of one suspected model: expose → find the backdoor label → recover masks → prune.

`run_defense` is the one entry point the recipes and benchmarks share. It only needs the suspect, its processor
(tokenizer or image processor) and clean defense data; a clean test set (and a triggered copy with the target)
only adds measurements. Exposure is Clean Unlearning unless ``DefenseConfig.exposure`` names another method
(``cft``, ``prune``, ``awp``; see `ebyd_hf.exposure`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from datasets import Dataset

from trainers import MaskRecoveryConfig, UnlearnConfig

from . import masks as M
from .data import DataError, input_column, label_names
from .detection import LabelFinding, backdoor_label
from .evaluation import backdoor_metrics
from .exposure import EXPOSURE_METHODS, Exposure, expose, exposure_config
from .processing import collator_for, prepare
from .removal import Recovery, ThresholdChoice, choose_threshold, prune, recover_masks

DEFAULT_GRID = [round(float(t), 2) for t in np.arange(0.05, 1.0, 0.05)]


@dataclass
class DefenseConfig:
    """Settings of one EBYD defense run (the ``defend`` section of a recipe YAML).

    ``unlearn`` and ``recover`` are passed to `trainers.UnlearnConfig` / `trainers.MaskRecoveryConfig`, so any
    `TrainingArguments` field can be set there (e.g. ``{"learning_rate": 2e-5, "num_train_epochs": 10}``).
    """

    max_length: int = field(default=128, metadata={"help": "Tokens kept per text input."})
    augment: bool = field(
        default=True, metadata={"help": "Random crop + flip of images while unlearning and learning masks."}
    )
    eval_batch_size: int = field(default=64, metadata={"help": "Batch size for every evaluation pass."})
    holdout_fraction: float = field(
        default=0.2, metadata={"help": "Share of the defense data held out of mask learning to choose the threshold."}
    )
    mask_kinds: list[str] = field(
        default_factory=lambda: ["layernorm", "batchnorm"],
        metadata={"help": "Normalisation layer types that get neuron masks (selected by type)."},
    )
    mask_target: str = field(default="weight", metadata={"help": "'weight' (γ only) or 'weight_and_bias'."})
    prune_threshold: float | None = field(
        default=None, metadata={"help": "Prune units with mask <= this; None chooses it on the held-out slice."}
    )
    threshold_grid: list[float] = field(
        default_factory=lambda: list(DEFAULT_GRID), metadata={"help": "Thresholds tried when choosing."}
    )
    ca_tolerance: float = field(
        default=0.02, metadata={"help": "Held-out accuracy the chosen threshold may cost, as a fraction."}
    )
    seed: int = field(default=42, metadata={"help": "Seed for the hold-out split and the trainers."})
    exposure: str = field(default="cul", metadata={"help": "Exposure method: cul, cft, prune or awp."})
    unlearn: dict = field(default_factory=dict, metadata={"help": "UnlearnConfig overrides (JSON on the CLI)."})
    exposure_args: dict = field(
        default_factory=dict,
        metadata={"help": "Overrides for the chosen exposure method's config (JSON; for cul, added to `unlearn`)."},
    )
    recover: dict = field(default_factory=dict, metadata={"help": "MaskRecoveryConfig overrides (JSON on the CLI)."})

    def __post_init__(self):
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.prune_threshold is not None and not 0.0 <= self.prune_threshold <= 1.0:
            raise ValueError(f"prune_threshold must be in [0, 1], got {self.prune_threshold}")
        if self.exposure not in EXPOSURE_METHODS:
            raise ValueError(f"exposure must be one of {sorted(EXPOSURE_METHODS)}, got {self.exposure!r}")
        if self.mask_target not in M.MASK_TARGETS:
            raise ValueError(f"mask_target must be one of {M.MASK_TARGETS}, got {self.mask_target!r}")

    def unlearn_config(self, scratch_dir: str) -> UnlearnConfig:
        return UnlearnConfig(**self._trainer_defaults(scratch_dir, "unlearn"), **self.unlearn)

    def exposure_config(self, scratch_dir: str):
        """The chosen exposure method's config (`UnlearnConfig`, `ConfusionConfig`, `PruningConfig`, `AWPConfig`)."""
        overrides = {**self.unlearn, **self.exposure_args} if self.exposure == "cul" else dict(self.exposure_args)
        if self.exposure == "prune":
            overrides.setdefault("kinds", list(self.mask_kinds))
        return exposure_config(
            self.exposure, scratch_dir=scratch_dir, seed=self.seed, eval_batch_size=self.eval_batch_size, **overrides
        )

    def recover_config(self, scratch_dir: str) -> MaskRecoveryConfig:
        return MaskRecoveryConfig(**self._trainer_defaults(scratch_dir, "recover"), **self.recover)

    def _trainer_defaults(self, scratch_dir: str, name: str) -> dict:
        overrides = getattr(self, name)
        defaults = {
            "output_dir": os.path.join(scratch_dir, name),
            "seed": self.seed,
            "per_device_eval_batch_size": self.eval_batch_size,
        }
        return {k: v for k, v in defaults.items() if k not in overrides}


@dataclass
class DefenseResult:
    purified: object
    exposure: Exposure
    label: LabelFinding
    recovery: Recovery
    threshold: ThresholdChoice | None
    prune_threshold: float
    metrics: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    config: DefenseConfig | None = None

    def report(self) -> dict:
        """Everything a person needs to judge the run, as plain JSON-able data."""
        units = {name: int(v.numel()) for name, v in self.recovery.masks.items()}
        return {
            "label_found": self.label.label,
            "label_share": self.label.share,
            "prediction_counts": self.label.counts,
            "metrics": self.metrics,
            "exposure": {
                "method": self.exposure.method,
                "bem": self.exposure.bem,
                "steps": self.exposure.steps,
                "stop_reason": self.exposure.stop_reason,
                "trace": self.exposure.trace,
            },
            "pruning": {
                "threshold": self.prune_threshold,
                "pruned_units": M.count_pruned(self.recovery.masks, self.prune_threshold),
                "total_units": sum(units.values()),
                "masked_layers": len(units),
                "recovery_steps": self.recovery.steps,
                "threshold_search": asdict(self.threshold) if self.threshold else None,
            },
            "seconds": self.seconds,
            "config": asdict(self.config) if self.config else None,
        }


def run_defense(
    model,
    processor,
    defense: Dataset,
    *,
    config: DefenseConfig,
    scratch_dir: str,
    test: Dataset | None = None,
    asr_set: Dataset | None = None,
    target: int | None = None,
) -> DefenseResult:
    """Defend ``model`` with EBYD (CUL exposure + Recover-Pruning) using only the clean ``defense`` rows.

    ``test`` (clean, with labels), ``asr_set`` (triggered, see `attacks.triggered_test_set`) and ``target`` are
    used only to measure CA/ASR before and after; nothing is chosen on them. The returned purified model is a
    pruned copy of ``model`` with plain weights (no masks attached).
    """
    num_labels = len(label_names(defense))
    if model.config.num_labels != num_labels:
        raise DataError(f"the model has {model.config.num_labels} labels but the defense data has {num_labels}")
    if not M.norm_layers(model, config.mask_kinds):
        raise M.MaskError(
            f"{type(model).__name__} has no {'/'.join(config.mask_kinds)} layer: Recover-Pruning needs normalisation "
            "layers to mask"
        )
    collator = collator_for(processor)
    prep = lambda ds, augment=False: prepare(ds, processor, max_length=config.max_length, augment=augment)  # noqa: E731
    split = defense.train_test_split(test_size=config.holdout_fraction, seed=config.seed, stratify_by_column="label")
    fit, holdout = prep(split["train"]), prep(split["test"])
    # Images train on augmented views (as in the paper); the stop rule, label and threshold see plain ones.
    augmented = config.augment and input_column(defense) == "image"
    fit_train = prep(split["train"], augment=True) if augmented else fit
    test_tok = prep(test) if test is not None else None
    asr_tok = prep(asr_set) if asr_set is not None and target is not None else None
    measure = lambda m: backdoor_metrics(  # noqa: E731
        m, test_tok, collator=collator, asr_set=asr_tok, target=target, batch_size=config.eval_batch_size
    )
    model.eval()
    metrics, seconds = {}, {}
    if test_tok is not None:
        metrics["suspect"] = measure(model)

    exposure = expose(
        config.exposure,
        model,
        fit_train,
        config=config.exposure_config(scratch_dir),
        collator=collator,
        kinds=config.mask_kinds,
        probe=asr_tok,
        watch=fit,
    )
    seconds["expose"] = exposure.seconds
    label = backdoor_label(
        exposure.model, fit, collator=collator, num_labels=num_labels, batch_size=config.eval_batch_size
    )
    if test_tok is not None:
        metrics["exposed"] = {**measure(exposure.model), "target_share": label.share}

    recovery = recover_masks(
        exposure.model,
        fit_train,
        config=config.recover_config(scratch_dir),
        collator=collator,
        kinds=config.mask_kinds,
        target=config.mask_target,
    )
    seconds["recover"] = recovery.seconds
    exposure.model = None  # the exposed weights are no longer needed; keep memory flat for large models

    start = time.perf_counter()
    choice = None
    threshold = config.prune_threshold
    if threshold is None:
        choice = choose_threshold(
            model,
            recovery.masks,
            holdout,
            collator=collator,
            kinds=config.mask_kinds,
            target=config.mask_target,
            grid=config.threshold_grid,
            tolerance=config.ca_tolerance,
            batch_size=config.eval_batch_size,
        )
        threshold = choice.threshold
    purified = prune(model, recovery.masks, threshold, kinds=config.mask_kinds, target=config.mask_target)
    seconds["prune"] = time.perf_counter() - start
    if test_tok is not None:
        metrics["purified"] = measure(purified)
    return DefenseResult(purified, exposure, label, recovery, choice, threshold, metrics, seconds, config)

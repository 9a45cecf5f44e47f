"""Scan a suspected model: expose it, then detect on the exposed model (verdict + label, Neural Cleanse, STRIP).

`run_scan` is what `recipes/scan.py` and `benchmarks/detection.py` share. It needs only the suspect, its processor
and clean defense rows; a clean test set and a triggered copy (with the target) add measurements: the exposure's
CA/ASR trace (hence BEM) and STRIP's AUROC. Nothing is chosen on them.

* verdict and label: the exposed model's dominant prediction on the defense rows; a second exposure of a
  different kind (``corroborate``: pruning for images, CFT for text) must agree on the label, both dominant
  (`detect_backdoor`, and README "How the verdict threshold was chosen");
* Neural Cleanse (images only): mode B reverses only that label on the exposed model; mode A (optional, K times
  the cost) reverses every label on the original model, as NC was published;
* STRIP: entropy of perturbed inputs under the original and under the exposed model.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

from datasets import Dataset

from .data import DataError, input_column, label_names, subsample
from .detection import (
    DEFAULT_DOMINANCE,
    NeuralCleanseConfig,
    NeuralCleanseResult,
    StripConfig,
    StripResult,
    Verdict,
    clean_images,
    detect_backdoor,
    neural_cleanse,
    strip,
    trigger_transfer_rate,
)
from .exposure import EXPOSURE_METHODS, Exposure, expose, exposure_config
from .processing import collator_for, prepare
from .report import plot_exposure_comparison, plot_strip

NC_MODES = ("none", "exposed", "both")


@dataclass
class ScanConfig:
    """Settings of one scan (the ``scan`` section of a recipe YAML)."""

    exposure: str = field(default="cul", metadata={"help": "Exposure method: cul, cft, prune or awp."})
    exposure_args: dict = field(default_factory=dict, metadata={"help": "Exposure config overrides (JSON)."})
    mask_kinds: list[str] = field(
        default_factory=lambda: ["layernorm", "batchnorm"],
        metadata={"help": "Normalisation layer types AWP perturbs and pruning ranks."},
    )
    max_length: int = field(default=128, metadata={"help": "Tokens kept per text input."})
    augment: bool = field(default=True, metadata={"help": "Random crop + flip of images while exposing."})
    eval_batch_size: int = field(default=64, metadata={"help": "Batch size for every evaluation pass."})
    probe_size: int = field(default=500, metadata={"help": "Test / triggered rows traced per exposure epoch."})
    seed: int = field(default=42, metadata={"help": "Seed for the trainers and every sample drawn."})
    dominance: float = field(
        default=DEFAULT_DOMINANCE,
        metadata={"help": "Dominant / runner-up class ratio every exposure must reach for a 'backdoored' verdict."},
    )
    corroborate: str = field(
        default="auto",
        metadata={
            "help": "Second exposure method that must agree on the label: 'auto' (prune for images, cft for text), "
            "a method name, or 'none' (trust the first alone)."
        },
    )
    corroborate_args: dict = field(default_factory=dict, metadata={"help": "Its config overrides (JSON)."})
    neural_cleanse: str = field(
        default="exposed", metadata={"help": f"Neural Cleanse for image models: {NC_MODES} (both adds mode A)."}
    )
    nc_args: dict = field(default_factory=dict, metadata={"help": "NeuralCleanseConfig overrides (JSON)."})
    nc_transfer_threshold: float = field(
        default=0.5,
        metadata={
            "help": "Mode B flags when its reversed trigger sends at least this share of clean images to the "
            "label on the original model."
        },
    )
    strip: bool = field(default=True, metadata={"help": "Run STRIP when triggered inputs are given."})
    strip_samples: int = field(default=100, metadata={"help": "Clean and triggered inputs STRIP scores (each)."})
    strip_args: dict = field(default_factory=dict, metadata={"help": "StripConfig overrides (JSON)."})

    def __post_init__(self):
        if self.exposure not in EXPOSURE_METHODS:
            raise ValueError(f"exposure must be one of {sorted(EXPOSURE_METHODS)}, got {self.exposure!r}")
        if self.corroborate not in ("auto", "none", *EXPOSURE_METHODS):
            raise ValueError(
                f"corroborate must be 'auto', 'none' or one of {sorted(EXPOSURE_METHODS)}, got {self.corroborate!r}"
            )
        if self.corroborate == self.exposure:
            raise ValueError(f"corroborate must differ from the exposure method ({self.exposure!r})")
        if self.neural_cleanse not in NC_MODES:
            raise ValueError(f"neural_cleanse must be one of {NC_MODES}, got {self.neural_cleanse!r}")
        if not self.dominance > 1.0:
            raise ValueError(f"dominance must be > 1 (dominant / runner-up class), got {self.dominance}")

    def corroborating_method(self, modality: str) -> str | None:
        """The second exposure for ``modality`` ('image' or 'text'), or None.

        'auto' picks what separated clean from backdoored models here: on binary text, CFT (CUL collapses a clean
        BERT onto one class, CFT leaves it spread); on images, pruning (CFT at its reference settings never got
        the CIFAR-10 ResNets down to the floor, and pruning sent clean ones to other classes than CUL did)."""
        if self.corroborate == "auto":
            preferred = ("prune", "cul") if modality == "image" else ("cft", "cul")
            return next(m for m in preferred if m != self.exposure)
        return None if self.corroborate == "none" else self.corroborate

    def exposure_config(self, scratch_dir: str, method: str | None = None):
        """The config of ``method`` (default: the exposure method) with this scan's overrides and defaults."""
        method = method or self.exposure
        overrides = self.exposure_args if method == self.exposure else self.corroborate_args
        return exposure_config(
            method,
            scratch_dir=scratch_dir,
            seed=self.seed,
            eval_batch_size=self.eval_batch_size,
            default_kinds=self.mask_kinds,
            **overrides,
        )


@dataclass
class ScanResult:
    exposure: Exposure
    verdict: Verdict
    corroboration: Exposure | None = None
    neural_cleanse: dict[str, NeuralCleanseResult] = field(default_factory=dict)
    nc_transfer: float | None = None
    nc_transfer_threshold: float = 0.5
    strip: dict[str, StripResult] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    config: ScanConfig | None = None

    @property
    def nc_exposed_flagged(self) -> bool | None:
        """Mode B's flag: the label's reversed trigger, found on the exposed model, also works on the original."""
        return None if self.nc_transfer is None else self.nc_transfer >= self.nc_transfer_threshold

    def report(self) -> dict:
        exposures = {"exposure": self.exposure}
        if self.corroboration is not None:
            exposures["corroborating_exposure"] = self.corroboration
        nc = {}
        if "exposed_label" in self.neural_cleanse:
            result = self.neural_cleanse["exposed_label"]
            nc["exposed_label"] = {
                **result.summary(),
                "flagged": self.nc_exposed_flagged,
                "transfer_rate": self.nc_transfer,
                "transfer_threshold": self.nc_transfer_threshold,
            }
        if "all_labels" in self.neural_cleanse:
            nc["all_labels"] = self.neural_cleanse["all_labels"].summary()
        return {
            **self.verdict.summary(),
            **{key: _exposure_summary(e) for key, e in exposures.items()},
            "neural_cleanse": nc or None,
            "strip": {name: r.summary() for name, r in self.strip.items()} or None,
            "seconds": self.seconds,
            "config": asdict(self.config) if self.config else None,
        }

    def save(self, output_dir: str) -> None:
        """``scan_report.json`` and the PNGs: exposure traces, STRIP histograms, reversed triggers."""
        plots = os.path.join(output_dir, "plots")
        os.makedirs(plots, exist_ok=True)
        with open(os.path.join(output_dir, "scan_report.json"), "w") as f:
            json.dump(self.report(), f, indent=2)
        traces = {self.exposure.method: self.exposure.trace}
        if self.corroboration is not None:
            traces[self.corroboration.method] = self.corroboration.trace
        plot_exposure_comparison(traces, os.path.join(plots, "exposure.png"), title="Exposure (CA / ASR per epoch)")
        if self.strip:
            plot_strip(self.strip, os.path.join(plots, "strip.png"))
        for mode, result in self.neural_cleanse.items():
            for label, trigger in result.triggers.items():
                trigger.save_pngs(os.path.join(plots, f"nc_{mode}"), prefix=f"label{label}_")


def _exposure_summary(exposure: Exposure) -> dict:
    return {
        "method": exposure.method,
        "bem": exposure.bem,
        "steps": exposure.steps,
        "stop_reason": exposure.stop_reason,
        "seconds": exposure.seconds,
        "trace": exposure.trace,
    }


def run_scan(
    model,
    processor,
    defense: Dataset,
    *,
    config: ScanConfig,
    scratch_dir: str,
    test: Dataset | None = None,
    asr_set: Dataset | None = None,
) -> ScanResult:
    """Expose ``model`` on the clean ``defense`` rows and run the detectors; ``test``/``asr_set`` only measure."""
    num_labels = len(label_names(defense))
    if model.config.num_labels != num_labels:
        raise DataError(f"the model has {model.config.num_labels} labels but the defense data has {num_labels}")
    modality = input_column(defense)
    collator = collator_for(processor)
    prep = lambda ds, augment=False: prepare(ds, processor, max_length=config.max_length, augment=augment)  # noqa: E731
    watch = prep(defense)
    train = prep(defense, augment=True) if config.augment and modality == "image" else watch
    probe = prep(subsample(asr_set, config.probe_size, seed=config.seed)) if asr_set is not None else None
    clean_probe = prep(subsample(test, config.probe_size, seed=config.seed)) if test is not None else None
    model.eval()
    seconds = {}

    def run(method: str) -> Exposure:
        return expose(
            method,
            model,
            train,
            config=config.exposure_config(scratch_dir, method),
            collator=collator,
            kinds=config.mask_kinds,
            probe=probe,
            watch=watch,
            clean_probe=clean_probe,
        )

    exposure = run(config.exposure)
    seconds["expose"] = exposure.seconds
    second = None
    corroborate = config.corroborating_method(modality)
    if corroborate is not None:
        second = run(corroborate)
        seconds["corroborate"] = second.seconds
    start = time.perf_counter()
    verdict = detect_backdoor(
        exposure.model,
        watch,
        collator=collator,
        num_labels=num_labels,
        threshold=config.dominance,
        corroborating_model=None if second is None else second.model,
        batch_size=config.eval_batch_size,
    )
    seconds["label"] = time.perf_counter() - start
    if second is not None:
        second.model = None  # only its verdict is needed; keep memory flat
    result = ScanResult(exposure, verdict, second, nc_transfer_threshold=config.nc_transfer_threshold, config=config)

    if modality == "image" and config.neural_cleanse != "none":
        nc_config = NeuralCleanseConfig(**{"seed": config.seed, **config.nc_args})
        label = int(verdict.counts.index(max(verdict.counts)))  # the exposed label, also for a "clean" verdict
        mode_b = neural_cleanse(exposure.model, defense, processor=processor, labels=[label], config=nc_config)
        result.neural_cleanse["exposed_label"] = mode_b
        seconds["nc_exposed_label"] = mode_b.seconds
        # Mode B has one norm and no population to compare it with: it flags when the trigger it found on the
        # exposed model also moves the *original* model, on clean rows it was not optimised on.
        held_out = test if test is not None else defense
        images = clean_images(
            held_out.filter(lambda y: y != label, input_columns="label"),
            processor,
            max_images=nc_config.max_images,
            seed=config.seed + 1,
        )
        result.nc_transfer = trigger_transfer_rate(model, mode_b.triggers[label], images, processor=processor)
        if config.neural_cleanse == "both":
            mode_a = neural_cleanse(model, defense, processor=processor, config=nc_config)
            result.neural_cleanse["all_labels"] = mode_a
            seconds["nc_all_labels"] = mode_a.seconds

    if config.strip and asr_set is not None:
        strip_config = StripConfig(**{"seed": config.seed, "max_length": config.max_length, **config.strip_args})
        clean = subsample(test if test is not None else defense, config.strip_samples, seed=config.seed)
        triggered = subsample(asr_set, config.strip_samples, seed=config.seed)
        for name, m in (("original", model), ("exposed", exposure.model)):
            result.strip[name] = strip(m, processor, clean, triggered, defense, config=strip_config)
            seconds[f"strip_{name}"] = result.strip[name].seconds
    result.seconds = seconds
    return result

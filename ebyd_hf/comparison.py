"""Every exposure method on the same suspect and the same data: BEM, CA/ASR traces, a table and a plot.

BEM (EBYD Eq. 7) needs the ASR per exposure epoch, so the comparison needs a triggered test set (with the
target); the clean test set gives the CA the table and BEM use. Neither influences any exposure run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from datasets import Dataset

from .data import input_column, subsample
from .exposure import EXPOSURE_METHODS, Exposure, expose, exposure_config
from .processing import collator_for, prepare
from .report import exposure_table, plot_exposure_comparison


@dataclass
class ComparisonConfig:
    """Settings shared by the exposure runs of one comparison (the ``expose`` section of a recipe YAML)."""

    methods: list[str] = field(
        default_factory=lambda: list(EXPOSURE_METHODS), metadata={"help": "Exposure methods to compare, in order."}
    )
    method_args: dict = field(
        default_factory=dict, metadata={"help": 'Per-method config overrides, e.g. {"cul": {"learning_rate": 1e-4}}.'}
    )
    mask_kinds: list[str] = field(
        default_factory=lambda: ["layernorm", "batchnorm"],
        metadata={"help": "Normalisation layer types AWP perturbs and pruning ranks."},
    )
    max_length: int = field(default=128, metadata={"help": "Tokens kept per text input."})
    augment: bool = field(default=True, metadata={"help": "Random crop + flip of images while exposing."})
    eval_batch_size: int = field(default=64, metadata={"help": "Batch size for every evaluation pass."})
    probe_size: int = field(default=500, metadata={"help": "Test / triggered rows traced per exposure epoch."})
    seed: int = field(default=42, metadata={"help": "Seed for the trainers and the probe samples."})

    def __post_init__(self):
        unknown = [m for m in [*self.methods, *self.method_args] if m not in EXPOSURE_METHODS]
        if unknown:
            raise ValueError(f"unknown exposure method(s) {unknown}; choose from {sorted(EXPOSURE_METHODS)}")

    def method_config(self, method: str, scratch_dir: str):
        return exposure_config(
            method,
            scratch_dir=scratch_dir,
            seed=self.seed,
            eval_batch_size=self.eval_batch_size,
            default_kinds=self.mask_kinds,
            **self.method_args.get(method, {}),
        )


def compare_exposures(
    model,
    processor,
    defense: Dataset,
    *,
    test: Dataset,
    asr_set: Dataset,
    config: ComparisonConfig,
    scratch_dir: str,
    keep_models: bool = False,
) -> dict[str, Exposure]:
    """Run each of ``config.methods`` on a copy of ``model``; exposed models are dropped unless ``keep_models``."""
    collator = collator_for(processor)
    prep = lambda ds, augment=False: prepare(ds, processor, max_length=config.max_length, augment=augment)  # noqa: E731
    watch = prep(defense)
    train = prep(defense, augment=True) if config.augment and input_column(defense) == "image" else watch
    probe = prep(subsample(asr_set, config.probe_size, seed=config.seed))
    clean_probe = prep(subsample(test, config.probe_size, seed=config.seed))
    model.eval()
    results = {}
    for method in config.methods:
        exposure = expose(
            method,
            model,
            train,
            config=config.method_config(method, scratch_dir),
            collator=collator,
            kinds=config.mask_kinds,
            probe=probe,
            watch=watch,
            clean_probe=clean_probe,
        )
        if not keep_models:
            exposure.model = None
        results[method] = exposure
    return results


def comparison_report(exposures: dict[str, Exposure]) -> dict:
    return {
        method: {
            "bem": e.bem,
            "stop_reason": e.stop_reason,
            "steps": e.steps,
            "seconds": e.seconds,
            "trace": e.trace,
        }
        for method, e in exposures.items()
    }


def write_comparison(exposures: dict[str, Exposure], output_dir: str, *, title: str = "Backdoor exposure") -> dict:
    """``exposure_comparison.json`` / ``.md`` and ``plots/exposure_methods.png`` in ``output_dir``."""
    report = comparison_report(exposures)
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "exposure_comparison.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(output_dir, "exposure_comparison.md"), "w") as f:
        f.write(exposure_table(report) + "\n")
    plot_exposure_comparison(
        {m: r["trace"] for m, r in report.items()},
        os.path.join(output_dir, "plots", "exposure_methods.png"),
        title=title,
    )
    return report

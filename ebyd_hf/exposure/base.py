"""What every exposure method returns, and the two ways a trace is made (a trainer's evaluations, or by hand)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
from datasets import Dataset

from ..evaluation import predict
from ..metrics import bem


@dataclass
class Exposure:
    """An exposed copy of a model and how it got there.

    ``trace`` has one entry per exposure epoch (for pruning: per pruning rate), the untouched model first (step 0):
    ``ca`` (accuracy on the watched defense data, which the stop rule reads), ``asr`` (on a triggered probe, if
    one was given), ``test_ca`` (on a held-out clean probe, if given), ``top_label`` / ``top_share`` (the
    dominant prediction on the defense data), ``floor`` and method-specific keys (``rate``, ``epsilon``).
    """

    model: object
    method: str = "cul"
    trace: list[dict] = field(default_factory=list)
    stop_reason: str | None = None
    steps: int = 0
    seconds: float = 0.0

    @property
    def bem(self) -> float | None:
        """BEM (EBYD Eq. 7) over the exposure epochs; the untouched model (step 0) is excluded.

        CA is the held-out clean accuracy (``test_ca``) when the trace has it, else the defense accuracy. None when
        the trace has no ASR (no probe was given) or the ASR is 0 throughout.
        """
        epochs = [t for t in self.trace if t["step"] > 0 and "asr" in t]
        if not epochs or all(t["asr"] == 0 for t in epochs):
            return None
        key = "test_ca" if all("test_ca" in t for t in epochs) else "ca"
        return bem([t[key] for t in epochs], [t["asr"] for t in epochs])


def eval_sets(watch: Dataset, probe: Dataset | None, clean_probe: Dataset | None, config) -> dict[str, Dataset]:
    """The named eval datasets an exposure trainer traces: watched defense data, then the optional probes."""
    sets = {config.stop_eval_key: watch}
    if probe is not None:
        sets[config.probe_eval_key] = probe
    if clean_probe is not None:
        sets[config.clean_probe_eval_key] = clean_probe
    return sets


def run_exposure_trainer(
    method: str,
    trainer_cls,
    model,
    train: Dataset,
    *,
    config,
    collator,
    watch: Dataset | None = None,
    probe: Dataset | None = None,
    clean_probe: Dataset | None = None,
    prepare_model=None,
    finish_model=None,
) -> Exposure:
    """Train a copy of ``model`` with an exposure trainer (evaluated once before training), return its `Exposure`.

    ``prepare_model`` / ``finish_model`` attach and fold extra parameters (e.g. AWP's perturbations).
    """
    exposed = copy.deepcopy(model)
    if prepare_model is not None:
        prepare_model(exposed)
    trainer = trainer_cls(
        model=exposed,
        args=config,
        train_dataset=train,
        eval_dataset=eval_sets(train if watch is None else watch, probe, clean_probe, config),
        data_collator=collator,
    )
    start = time.perf_counter()
    trainer.evaluate()  # step 0: the untouched model, so the trace starts where the suspect is
    trainer.train()
    seconds = time.perf_counter() - start
    if finish_model is not None:
        finish_model(exposed)
    exposed.eval()
    for param in exposed.parameters():
        param.requires_grad_(True)
    return Exposure(exposed, method, trainer.trace, trainer.stop_reason, trainer.state.global_step, seconds)


def trace_entry(
    model,
    watch: Dataset,
    *,
    collator,
    probe: Dataset | None = None,
    clean_probe: Dataset | None = None,
    batch_size: int = 64,
) -> dict:
    """The trace fields of one model state, measured directly (for methods without a trainer)."""
    preds = predict(model, watch, collator=collator, batch_size=batch_size)
    labels = np.asarray(watch["label"])
    counts = np.bincount(preds, minlength=int(max(preds.max(), labels.max())) + 1)
    entry = {
        "ca": float((preds == labels).mean()),
        "top_label": int(counts.argmax()),
        "top_share": float(counts.max() / len(preds)),
        "majority_rate": float(np.bincount(labels).max() / len(labels)),
    }
    if probe is not None:
        probe_preds = predict(model, probe, collator=collator, batch_size=batch_size)
        entry["asr"] = float((probe_preds == np.asarray(probe["label"])).mean())
    if clean_probe is not None:
        clean_preds = predict(model, clean_probe, collator=collator, batch_size=batch_size)
        entry["test_ca"] = float((clean_preds == np.asarray(clean_probe["label"])).mean())
    return entry

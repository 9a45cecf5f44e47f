"""Predictions and the backdoor metrics of one model on a clean test set and its triggered (ASR) copy."""

from __future__ import annotations

import inspect
import tempfile

import numpy as np
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import Trainer, TrainingArguments

from .metrics import attack_success_rate, clean_accuracy


def predict(model, ds: Dataset, *, collator, batch_size: int = 64) -> np.ndarray:
    """Predicted class per row, through `Trainer.predict` (so it also works under `accelerate launch`)."""
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_eval_batch_size=batch_size, report_to="none", disable_tqdm=True
        )
        out = Trainer(model=model, args=args, data_collator=collator).predict(ds)
    logits = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
    return np.asarray(logits).argmax(-1)


def backdoor_metrics(
    model, test: Dataset, *, collator, asr_set: Dataset | None = None, target: int | None = None, batch_size: int = 64
) -> dict[str, float]:
    """CA on ``test``; with a target, the clean target rate (CTR) too; with an ASR set, the ASR.

    ``asr_set`` rows carry the true label in ``original_label`` (see `attacks.triggered_test_set`).
    """
    preds = predict(model, test, collator=collator, batch_size=batch_size)
    labels = np.asarray(test["label"])
    out = {"ca": clean_accuracy(preds, labels)}
    if target is not None:
        out["clean_target_rate"] = attack_success_rate(preds, labels, target)
        if asr_set is not None:
            asr_preds = predict(model, asr_set, collator=collator, batch_size=batch_size)
            out["asr"] = attack_success_rate(asr_preds, np.asarray(asr_set["original_label"]), target)
    return out


def model_batches(model, ds: Dataset, *, collator, batch_size: int = 64):
    """Collated batches of ``ds`` holding only ``model``'s inputs (and ``labels``), on the model's device.

    Columns that are not ``forward`` arguments are dropped as `Trainer` drops them (transforms are kept). Every
    process sees the whole dataset, so what is computed from it is identical across `accelerate launch` ranks.
    """
    accepted = set(inspect.signature(model.forward).parameters) | {"label", "labels", "label_ids"}
    unused = [c for c in ds.column_names if c not in accepted]
    loader = DataLoader(ds.remove_columns(unused) if unused else ds, batch_size=batch_size, collate_fn=collator)
    device = next(model.parameters()).device
    for batch in loader:
        yield {k: v.to(device) for k, v in batch.items()}

"""The few numbers the trainers' own control flow needs from an evaluation pass."""

from __future__ import annotations

import numpy as np
from transformers import EvalPrediction


def classification_metrics(pred: EvalPrediction) -> dict[str, float]:
    """Accuracy, the share of the dominant predicted class (and which class), and the majority-class rate.

    ``majority_rate`` is the accuracy of always answering the most frequent true label: the level a collapsed
    model reaches, which the unlearning stop rule compares against.
    """
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    labels = np.asarray(pred.label_ids)
    preds = np.asarray(logits).argmax(-1)
    pred_counts = np.bincount(preds, minlength=int(np.asarray(logits).shape[-1]))
    label_counts = np.bincount(labels)
    return {
        "accuracy": float((preds == labels).mean()),
        "top_label": int(pred_counts.argmax()),
        "top_share": float(pred_counts.max() / len(preds)),
        "majority_rate": float(label_counts.max() / len(labels)),
    }

"""Attack success rate (ASR): the share of inputs whose true label is not the target that are predicted as it.

Given triggered inputs this is the ASR; given clean inputs the same number is the clean target rate (CTR), the
floor an ASR cannot be told apart from. Rows whose true label is the target are excluded, as in the paper.
"""

import datasets
import evaluate
import numpy as np


class AttackSuccessRate(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions: predicted class indices; references: TRUE labels; target: the "
            "backdoor label (keyword argument of compute).",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, target=None):
        if target is None:
            raise ValueError("attack_success_rate needs the backdoor label: compute(..., target=k)")
        predictions, references = np.asarray(predictions), np.asarray(references)
        keep = references != target
        if not keep.any():
            raise ValueError(f"no inputs with a true label other than the target {target}")
        return {"attack_success_rate": float((predictions[keep] == target).mean())}

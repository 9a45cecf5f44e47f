"""Clean accuracy (CA): the share of clean inputs classified correctly."""

import datasets
import evaluate
import numpy as np


class CleanAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions and references: class indices of clean inputs.",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions), np.asarray(references)
        if len(predictions) == 0:
            raise ValueError("clean accuracy of an empty set is undefined")
        return {"clean_accuracy": float((predictions == references).mean())}

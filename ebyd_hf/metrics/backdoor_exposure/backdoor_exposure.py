"""Backdoor Exposure Metric (BEM, EBYD Eq. 7): mean(ASR − CA) / mean(ASR) over the first t exposure epochs.

1 means the exposure erased clean accuracy while keeping the backdoor; 0 means CA and ASR fell together.
"""

import datasets
import evaluate
import numpy as np


class BackdoorExposure(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="Li et al., Expose Before You Defend, arXiv:2410.19427",
            inputs_description="ca and asr: one value per exposure epoch, in order.",
            features=datasets.Features({"ca": datasets.Value("float64"), "asr": datasets.Value("float64")}),
        )

    def _compute(self, ca, asr):
        ca, asr = np.asarray(ca, dtype=float), np.asarray(asr, dtype=float)
        if len(ca) == 0:
            raise ValueError("BEM needs at least one exposure epoch")
        if asr.mean() == 0:
            raise ValueError("BEM is undefined when the ASR is 0 at every epoch")
        return {"bem": float((asr - ca).mean() / asr.mean())}

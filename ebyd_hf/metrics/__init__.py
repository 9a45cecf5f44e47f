"""CA, ASR (and clean target rate) and BEM as local `evaluate` modules, loaded by path: no Hub fetch."""

from __future__ import annotations

import os
from functools import cache

import evaluate

_HERE = os.path.dirname(os.path.abspath(__file__))
METRICS = {
    "clean_accuracy": "clean_accuracy",
    "attack_success_rate": "attack_success_rate",
    "backdoor_exposure": "backdoor_exposure",
}


@cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    """``load_metric("clean_accuracy" | "attack_success_rate" | "backdoor_exposure")``."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; available: {sorted(METRICS)}")
    return evaluate.load(os.path.join(_HERE, METRICS[name]))


def clean_accuracy(predictions, references) -> float:
    return load_metric("clean_accuracy").compute(predictions=predictions, references=references)["clean_accuracy"]


def attack_success_rate(predictions, references, target: int) -> float:
    metric = load_metric("attack_success_rate")
    return metric.compute(predictions=predictions, references=references, target=target)["attack_success_rate"]


def bem(ca, asr) -> float:
    return load_metric("backdoor_exposure").compute(ca=ca, asr=asr)["bem"]

"""Pruning exposure: zero the units clean data activates least, at growing rates, until clean accuracy is gone.

Backdoor units are dormant on clean inputs (Fine-Pruning's observation), so ranking units by their mean
activation on the defense data separates them from the units the clean task relies on. Which end of the ranking
goes first decides what the method does:

* ``order="highest"`` (default; the paper's Eq. 5, "the top-n values ... remove the clean neurons") prunes the
  units clean data uses most. Clean accuracy falls while the dormant backdoor units survive: exposure.
* ``order="lowest"`` prunes the least-activated units first. That is Fine-Pruning, a *removal* method: on the
  tiny backdoored BERT and ResNet of the test suite it erased the backdoor (ASR 1.0 → 0.0) and collapsed the
  model onto a non-target class before clean accuracy reached the floor. It is kept for comparison.

Units are LayerNorm units and BatchNorm channels (chosen by type, as for the neuron masks) and, optionally, the
output units of named linear layers. Each layer is ranked on its own, since activation scales differ across
layers, and the same rate applies to every layer. A pruned unit outputs exactly 0: its affine weight and bias
(or its linear row and bias) are zeroed in a copy of the model, so the exposed model is a plain model.

The rate line search (0.1, 0.2, … by default) stops at the first rate where the defense accuracy is at or below
the floor (the accuracy of a constant predictor unless set) *and* the predictions have collapsed onto one class
(its share of the defense predictions is at least ``collapse_share``); each rate is one "epoch" of the trace. If
no rate gets there, the highest rate's model is the result and ``stop_reason`` is None.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..evaluation import model_batches
from ..masks import MaskError, norm_layers
from .base import Exposure, trace_entry

ORDERS = ("lowest", "highest")


@dataclass
class PruningConfig:
    """Settings of the pruning exposure (the ``exposure_args`` of ``exposure: prune``)."""

    rates: list[float] = field(
        default_factory=lambda: [round(0.1 * i, 1) for i in range(1, 10)],
        metadata={"help": "Pruning rates tried in order (share of units per layer)."},
    )
    kinds: list[str] = field(
        default_factory=lambda: ["layernorm", "batchnorm"], metadata={"help": "Normalisation layer types pruned."}
    )
    linear_layers: list[str] = field(
        default_factory=list, metadata={"help": "Module paths of linear layers whose output units are pruned too."}
    )
    order: str = field(default="highest", metadata={"help": f"Which activations go first: {ORDERS}."})
    ca_floor: float | None = field(
        default=None, metadata={"help": "Stop at defense accuracy <= this (None: majority rate)."}
    )
    ca_floor_margin: float = field(default=0.0, metadata={"help": "Added to the floor."})
    collapse_share: float = field(
        default=0.5, metadata={"help": "Stop only once one class takes at least this share of the predictions."}
    )
    batch_size: int = field(default=64, metadata={"help": "Batch size of the activation and evaluation passes."})

    def __post_init__(self):
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")
        if not self.rates or any(not 0.0 < r <= 1.0 for r in self.rates):
            raise ValueError(f"pruning rates must be in (0, 1], got {self.rates}")
        if sorted(self.rates) != list(self.rates):
            raise ValueError(f"pruning rates must increase, got {self.rates}")
        if not 0.0 < self.collapse_share <= 1.0:
            raise ValueError(f"collapse_share must be in (0, 1], got {self.collapse_share}")


def prunable_layers(model: nn.Module, kinds, linear_layers=()) -> dict[str, nn.Module]:
    """The layers whose units the pruning exposure ranks: norm layers of ``kinds`` plus the named linear layers."""
    layers = norm_layers(model, kinds) if kinds else {}
    modules = dict(model.named_modules())
    for name in linear_layers:
        if not isinstance(modules.get(name), nn.Linear):
            raise MaskError(f"{name!r} is not an nn.Linear module of {type(model).__name__}")
        layers[name] = modules[name]
    if not layers:
        raise MaskError(f"{type(model).__name__} has nothing to prune for kinds {list(kinds)}")
    for name, module in layers.items():
        if getattr(module, "weight", None) is None:
            raise MaskError(f"layer {name!r} has no affine weight to zero")
    return layers


def mean_activations(model: nn.Module, ds: Dataset, layers: dict[str, nn.Module], *, collator, batch_size=64):
    """Mean activation per unit of each layer over ``ds``.

    BatchNorm channels: the mean of ReLU(output), i.e. what the next convolution sees in a ResNet. LayerNorm and
    linear units: the mean absolute output, since their signed values flow on unrectified.
    """
    sums = {name: None for name in layers}
    counts = dict.fromkeys(layers, 0)

    def hook(name):
        def record(module, inputs, output):
            if isinstance(module, _BatchNorm):
                per_unit = output.clamp(min=0).transpose(0, 1).reshape(output.shape[1], -1)
            else:
                per_unit = output.abs().reshape(-1, output.shape[-1]).T
            total = per_unit.sum(dim=1).double()
            sums[name] = total if sums[name] is None else sums[name] + total
            counts[name] += per_unit.shape[1]

        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in layers.items()]
    model.eval()
    try:
        with torch.no_grad():
            for batch in model_batches(model, ds, collator=collator, batch_size=batch_size):
                batch.pop("labels", None)
                model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return {name: (sums[name] / counts[name]).float().cpu() for name in layers}


def prune_units(model: nn.Module, layers: dict[str, nn.Module], units: dict[str, torch.Tensor]) -> nn.Module:
    """Zero the given unit indices of each named layer of ``model`` (in place); returns ``model``."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in layers:
            module, idx = modules[name], units[name]
            module.weight[idx] = 0  # a Linear's output rows, or a norm layer's γ
            if getattr(module, "bias", None) is not None:
                module.bias[idx] = 0
    return model


def activation_prune(
    model,
    defense: Dataset,
    *,
    config: PruningConfig,
    collator,
    probe: Dataset | None = None,
    watch: Dataset | None = None,
    clean_probe: Dataset | None = None,
) -> Exposure:
    """Prune copies of ``model`` at ``config.rates`` in turn; the exposed model is the first to reach the floor.

    Activations are measured on ``watch`` when given (the un-augmented view), else on ``defense``; the stop rule
    reads accuracy on the same data. ``probe`` / ``clean_probe`` are traced as ASR / ``test_ca`` only.
    """
    start = time.perf_counter()
    watch = defense if watch is None else watch
    layers = prunable_layers(model, config.kinds, config.linear_layers)
    activations = mean_activations(model, watch, layers, collator=collator, batch_size=config.batch_size)
    ranking = {name: torch.argsort(a, descending=config.order == "highest") for name, a in activations.items()}
    measure = lambda m: trace_entry(  # noqa: E731
        m, watch, collator=collator, probe=probe, clean_probe=clean_probe, batch_size=config.batch_size
    )
    first = measure(model)
    floor = (config.ca_floor if config.ca_floor is not None else first["majority_rate"]) + config.ca_floor_margin
    trace = [{"epoch": 0.0, "step": 0, "rate": 0.0, **first, "floor": floor}]
    exposed, stop_reason = model, None
    for step, rate in enumerate(config.rates, start=1):
        units = {name: order[: int(np.floor(rate * len(order)))] for name, order in ranking.items()}
        exposed = prune_units(copy.deepcopy(model), layers, units)
        trace.append({"epoch": float(step), "step": step, "rate": rate, **measure(exposed), "floor": floor})
        last = trace[-1]
        if last["ca"] <= floor and last["top_share"] >= config.collapse_share:
            stop_reason = (
                f"defense accuracy {last['ca']:.3f} <= floor {floor:.3f} with {last['top_share']:.0%} of predictions "
                f"on label {last['top_label']} at rate {rate}"
            )
            break
    for entry in trace:
        entry.pop("majority_rate", None)
    exposed.eval()
    return Exposure(exposed, "prune", trace, stop_reason, len(trace) - 1, time.perf_counter() - start)

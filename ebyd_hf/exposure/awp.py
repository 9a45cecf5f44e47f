"""Adversarial Weight Perturbation (AWP) exposure: perturb normalisation layers to erase clean behaviour.

Each LayerNorm / BatchNorm layer gets two parameters, δ_w and δ_b (one value per unit), and computes its output
as if its affine parameters were γ·(1 + δ_w) and β·(1 + δ_b) (EBYD Eq. 6: θ̂ = (1 + δ) ⊙ θ). `trainers.AWPTrainer`
maximises the clean loss over δ by projected sign-gradient ascent within ‖δ‖∞ ≤ ε; the result is folded into the
weights, so the exposed model is a plain model.

How this differs from the authors' code (``exposes/awp.py``, ANP-style noisy BatchNorm): there, the noise is
re-drawn at random before every batch and takes a single sign step of 0.2 that is never projected, so |δ| can
exceed ε and the model that is evaluated carries only the last batch's noise; the mask step that would use the
noise is commented out. Here δ persists across batches and epochs (one PGD run over the defense data), every
step is projected back onto the budget, BatchNorm statistics stay frozen, and the budget grows epoch by epoch so
the stop rule finds the smallest ε that erases clean accuracy (the authors sweep ε = 0.1 … 0.9 by hand).
"""

from __future__ import annotations

import torch
from datasets import Dataset
from torch import nn

from trainers import PERTURBATION_PARAMETER_NAMES, AWPConfig, AWPTrainer

from ..masks import MaskError, _num_units, _unit_view, norm_layers
from .base import Exposure, run_exposure_trainer

_HOOK_ATTR = "_ebyd_perturbation_hook"
WEIGHT_DELTA, BIAS_DELTA = PERTURBATION_PARAMETER_NAMES


def _perturb(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    # output = γ·x̂ + β, so γ(1+δw)·x̂ + β(1+δb) = output + δw·(output − β) + δb·β.
    view = lambda t: _unit_view(module, t, output.dim())  # noqa: E731
    bias = view(module.bias)
    return output + view(getattr(module, WEIGHT_DELTA)) * (output - bias) + view(getattr(module, BIAS_DELTA)) * bias


def attach_perturbations(model: nn.Module, *, kinds=("layernorm", "batchnorm")) -> dict[str, nn.Module]:
    """Give every normalisation layer of the given kinds zero-initialised δ_w, δ_b; returns the layers by path."""
    layers = norm_layers(model, kinds)
    if not layers:
        raise MaskError(f"{type(model).__name__} has no {'/'.join(kinds)} layer to perturb")
    for name, module in layers.items():
        if getattr(module, "weight", None) is None or getattr(module, "bias", None) is None:
            raise MaskError(f"layer {name!r} has no affine weight and bias to perturb")
        if hasattr(module, _HOOK_ATTR):
            raise MaskError(f"layer {name!r} already carries a weight perturbation")
        n = _num_units(module)
        for param_name in PERTURBATION_PARAMETER_NAMES:
            module.register_parameter(param_name, nn.Parameter(module.weight.new_zeros(n)))
        setattr(module, _HOOK_ATTR, module.register_forward_hook(_perturb))
    return layers


def fold_perturbations(model: nn.Module) -> nn.Module:
    """Write every perturbation into its layer's weight and bias and remove it (the model computes the same)."""
    with torch.no_grad():
        for module in model.modules():
            if not hasattr(module, _HOOK_ATTR):
                continue
            module.weight.mul_(1 + getattr(module, WEIGHT_DELTA).detach())
            module.bias.mul_(1 + getattr(module, BIAS_DELTA).detach())
            getattr(module, _HOOK_ATTR).remove()
            delattr(module, _HOOK_ATTR)
            for param_name in PERTURBATION_PARAMETER_NAMES:
                del module._parameters[param_name]
    return model


def awp_expose(
    model,
    defense: Dataset,
    *,
    config: AWPConfig,
    collator,
    kinds=("layernorm", "batchnorm"),
    probe: Dataset | None = None,
    watch: Dataset | None = None,
    clean_probe: Dataset | None = None,
) -> Exposure:
    """Run `AWPTrainer` on a copy of ``model`` with perturbations on its ``kinds`` layers, folded in at the end."""
    return run_exposure_trainer(
        "awp",
        AWPTrainer,
        model,
        defense,
        config=config,
        collator=collator,
        watch=watch,
        probe=probe,
        clean_probe=clean_probe,
        prepare_model=lambda m: attach_perturbations(m, kinds=kinds),
        finish_model=fold_perturbations,
    )

"""Neuron masks on normalisation layers: attach, read, write, and fold into the weights.

A mask is one value in [0, 1] per unit: per hidden unit of an `nn.LayerNorm` (BERT), per channel of a
BatchNorm (ResNets). Layers are selected by type, never by name, so any architecture built from these modules
works. Each mask is an `nn.Parameter` registered on the layer it masks under the name
`trainers.MASK_PARAMETER_NAME`, applied by a forward hook. Nothing is renamed, so a masked model's original
state-dict keys are intact, and `fold_masks` writes the mask into ``weight`` (and ``bias``) and removes it:
the result saves and loads with plain `save_pretrained` / `from_pretrained`.

What a mask scales (``target``):

* ``"weight"`` (default): only γ. A masked unit outputs ``m·γ·x̂ + β``; at m = 0 it carries no input-dependent
  signal but keeps its learned offset β, so later layers see a constant where they saw a distribution centred
  there. This is what the EBYD/RNP reference code masks, and the pruned model stays closest to the original.
* ``"weight_and_bias"``: the whole unit, ``m·(γ·x̂ + β)``; at m = 0 the unit outputs exactly 0.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from trainers import MASK_PARAMETER_NAME, mask_parameters

NORM_KINDS: dict[str, tuple[type[nn.Module], ...]] = {
    "layernorm": (nn.LayerNorm,),
    "batchnorm": (_BatchNorm,),
}
MASK_TARGETS = ("weight", "weight_and_bias")
_HOOK_ATTR = "_ebyd_mask_hook"
_TARGET_ATTR = "_ebyd_mask_target"


class MaskError(ValueError):
    """The model cannot be masked as asked (no matching layers, masks already attached, bad values)."""


def norm_layers(model: nn.Module, kinds: Iterable[str] = ("layernorm", "batchnorm")) -> dict[str, nn.Module]:
    """The normalisation layers of the given kinds, by module path."""
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in NORM_KINDS]
    if unknown:
        raise MaskError(f"unknown layer kind(s) {unknown}; choose from {sorted(NORM_KINDS)}")
    types = tuple(t for k in kinds for t in NORM_KINDS[k])
    return {name: m for name, m in model.named_modules() if isinstance(m, types)}


def _num_units(module: nn.Module) -> int:
    act = getattr(module, "act", None)
    if isinstance(module, _BatchNorm) and act is not None and not isinstance(act, nn.Identity):
        # e.g. timm's BatchNormAct2d: the hook would see act(BN(x)), and m·γ can no longer be separated from β.
        raise MaskError(f"{type(module).__name__} fuses an activation into BatchNorm; masking it is not supported")
    if isinstance(module, nn.LayerNorm):
        if len(module.normalized_shape) != 1:
            raise MaskError(f"LayerNorm over shape {module.normalized_shape} is not supported (one dim expected)")
        return module.normalized_shape[0]
    return module.num_features


def _unit_view(module: nn.Module, t: torch.Tensor, ndim: int) -> torch.Tensor:
    # LayerNorm units are the last dimension; BatchNorm channels are dimension 1.
    if isinstance(module, _BatchNorm):
        return t.view(1, -1, *([1] * (ndim - 2)))
    return t


def _apply_mask(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    mask = _unit_view(module, getattr(module, MASK_PARAMETER_NAME), output.dim())
    bias = getattr(module, "bias", None)
    if getattr(module, _TARGET_ATTR) == "weight" and bias is not None:
        bias = _unit_view(module, bias, output.dim())
        return mask * (output - bias) + bias  # = m·γ·x̂ + β
    return mask * output


def attach_masks(
    model: nn.Module,
    *,
    kinds: Iterable[str] = ("layernorm", "batchnorm"),
    target: str = "weight",
    init: float = 1.0,
) -> dict[str, nn.Parameter]:
    """Register a mask of ones (or ``init``) on every normalisation layer of the given kinds.

    Returns the new mask parameters keyed by module path. Raises `MaskError` if the model has no such layer.
    """
    if target not in MASK_TARGETS:
        raise MaskError(f"mask target must be one of {MASK_TARGETS}, got {target!r}")
    layers = norm_layers(model, kinds)
    if not layers:
        raise MaskError(
            f"{type(model).__name__} has no {'/'.join(kinds)} layer to mask; Recover-Pruning needs "
            "nn.LayerNorm (transformers) or BatchNorm (CNNs) layers"
        )
    masks = {}
    for name, module in layers.items():
        if hasattr(module, _HOOK_ATTR):
            raise MaskError(f"layer {name!r} already carries a mask")
        ref = module.weight if getattr(module, "weight", None) is not None else next(model.parameters())
        param = nn.Parameter(torch.full((_num_units(module),), float(init), dtype=ref.dtype, device=ref.device))
        module.register_parameter(MASK_PARAMETER_NAME, param)
        setattr(module, _TARGET_ATTR, target)
        setattr(module, _HOOK_ATTR, module.register_forward_hook(_apply_mask))
        masks[name] = param
    return masks


def _masked_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if hasattr(m, _HOOK_ATTR)}


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Current mask values (detached CPU copies), keyed by module path."""
    return {name: getattr(m, MASK_PARAMETER_NAME).detach().cpu().clone() for name, m in _masked_layers(model).items()}


def set_masks(model: nn.Module, values: dict[str, torch.Tensor]) -> None:
    """Copy mask values (e.g. learned on the exposed model) into the masks attached to ``model``."""
    layers = _masked_layers(model)
    missing, extra = sorted(set(values) - set(layers)), sorted(set(layers) - set(values))
    if missing or extra:
        raise MaskError(f"mask layouts differ: not in model {missing[:3]}, not in values {extra[:3]}")
    with torch.no_grad():
        for name, module in layers.items():
            mask = getattr(module, MASK_PARAMETER_NAME)
            if values[name].shape != mask.shape:
                raise MaskError(
                    f"mask for {name!r} has shape {tuple(values[name].shape)}, expected {tuple(mask.shape)}"
                )
            mask.copy_(values[name].to(mask))


def binarise(values: dict[str, torch.Tensor], threshold: float) -> dict[str, torch.Tensor]:
    """Hard masks: 0 where the learned mask is <= ``threshold`` (the unit is pruned), 1 elsewhere."""
    return {name: (v > threshold).to(v.dtype) for name, v in values.items()}


def count_pruned(values: dict[str, torch.Tensor], threshold: float) -> int:
    return int(sum((v <= threshold).sum().item() for v in values.values()))


def fold_masks(model: nn.Module) -> nn.Module:
    """Multiply every mask into its layer's weight (and bias, for ``weight_and_bias``) and remove the masks.

    The model computes exactly what it computed with the masks attached, and its state dict has the original
    keys again, so `save_pretrained` / `from_pretrained` round-trip it.
    """
    with torch.no_grad():
        for module in _masked_layers(model).values():
            mask = getattr(module, MASK_PARAMETER_NAME).detach()
            if getattr(module, "weight", None) is None:
                raise MaskError(f"cannot fold a mask into {type(module).__name__} without an affine weight")
            module.weight.mul_(mask)
            if getattr(module, _TARGET_ATTR) == "weight_and_bias" and getattr(module, "bias", None) is not None:
                module.bias.mul_(mask)
            _detach(module)
    return model


def remove_masks(model: nn.Module) -> nn.Module:
    """Drop the masks without changing the weights."""
    for module in _masked_layers(model).values():
        _detach(module)
    return model


def _detach(module: nn.Module) -> None:
    getattr(module, _HOOK_ATTR).remove()
    delattr(module, _HOOK_ATTR)
    delattr(module, _TARGET_ATTR)
    del module._parameters[MASK_PARAMETER_NAME]


__all__ = [
    "MASK_TARGETS",
    "NORM_KINDS",
    "MaskError",
    "attach_masks",
    "binarise",
    "count_pruned",
    "fold_masks",
    "get_masks",
    "mask_parameters",
    "norm_layers",
    "remove_masks",
    "set_masks",
]

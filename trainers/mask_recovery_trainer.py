from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from transformers import Trainer, TrainerCallback

from .mask_recovery_config import MaskRecoveryConfig
from .metrics import classification_metrics

# The convention between this trainer and whoever attaches masks: a mask is a parameter with this name,
# owned by the module it masks (so `named_parameters()` finds it as "<module path>.neuron_mask").
MASK_PARAMETER_NAME = "neuron_mask"


def mask_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every neuron mask in ``model``, keyed by parameter name."""
    suffix = f".{MASK_PARAMETER_NAME}"
    return {name: p for name, p in model.named_parameters() if name.endswith(suffix) or name == MASK_PARAMETER_NAME}


class ClampMasksCallback(TrainerCallback):
    """Projects masks back onto [0, 1] after every optimizer step."""

    def __init__(self, masks: list[nn.Parameter]):
        self.masks = masks

    def on_optimizer_step(self, args, state, control, **kwargs):
        with torch.no_grad():
            for mask in self.masks:
                mask.clamp_(0.0, 1.0)


class MaskRecoveryTrainer(Trainer):
    """Trains only the neuron masks already attached to ``model``, on clean data, with cross-entropy.

    The model must carry parameters named ``*.neuron_mask`` (see `MASK_PARAMETER_NAME`); the trainer freezes
    every other parameter of the model it is given.
    """

    def __init__(self, model=None, args: MaskRecoveryConfig | None = None, compute_metrics=None, **kwargs):
        if args is None:
            args = MaskRecoveryConfig(output_dir="mask_recovery_output")
        masks = mask_parameters(model)
        if not masks:
            raise ValueError(
                f"the model has no parameters named '*.{MASK_PARAMETER_NAME}': attach neuron masks before "
                "building a MaskRecoveryTrainer"
            )
        if args.gradient_checkpointing:
            raise ValueError("gradient checkpointing re-runs forward hooks and is not supported for mask recovery")
        for name, param in model.named_parameters():
            param.requires_grad_(name in masks)
        super().__init__(model=model, args=args, compute_metrics=compute_metrics or classification_metrics, **kwargs)
        self.masks = list(masks.values())
        self.add_callback(ClampMasksCallback(self.masks))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.args.freeze_norm_stats and model.training:
            for module in model.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if self.args.mask_l1 and model.training:
            loss = loss + self.args.mask_l1 * torch.cat([m.flatten() for m in self.masks]).mean()
        return (loss, outputs) if return_outputs else loss

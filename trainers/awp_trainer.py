from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from transformers import TrainerCallback

from .awp_config import AWPConfig
from .exposure_trainer import ExposureTrainer

# The convention between this trainer and whoever attaches perturbations: parameters with these names, owned by
# the module whose weight / bias they perturb multiplicatively (module output computed with w·(1+δ_w), b·(1+δ_b)).
PERTURBATION_PARAMETER_NAMES = ("weight_perturbation", "bias_perturbation")


def perturbation_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every weight perturbation δ in ``model``, keyed by parameter name."""
    return {name: p for name, p in model.named_parameters() if name.rsplit(".", 1)[-1] in PERTURBATION_PARAMETER_NAMES}


class ProjectedSignAscentCallback(TrainerCallback):
    """PGD on δ: random start inside the budget, sign of the gradient as the step, projection after each step."""

    def __init__(self, trainer: AWPTrainer):
        self.trainer = trainer
        self.epsilon = 0.0

    def _project(self):
        with torch.no_grad():
            for p in self.trainer.perturbations:
                p.clamp_(-self.epsilon, self.epsilon)

    def on_train_begin(self, args, state, control, **kwargs):
        self.epsilon = args.budget(0)
        if args.random_init:
            gen = torch.Generator().manual_seed(args.seed)
            with torch.no_grad():
                for p in self.trainer.perturbations:
                    p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * self.epsilon)

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epsilon = args.budget(int(round(state.epoch or 0.0)))
        self._project()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        for p in self.trainer.perturbations:
            if p.grad is not None:
                p.grad.sign_()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self._project()

    def on_evaluate(self, args, state, control, **kwargs):
        if self.trainer.trace and self.trainer.trace[-1]["step"] == state.global_step:
            self.trainer.trace[-1]["epsilon"] = self.epsilon if state.global_step else 0.0


class AWPTrainer(ExposureTrainer):
    """Maximises the clean loss over multiplicative perturbations δ of normalisation-layer affine parameters.

    The model must carry parameters named like `PERTURBATION_PARAMETER_NAMES` (initialised to 0); the trainer
    freezes every other parameter. Training is projected sign-gradient ascent within the budget of `AWPConfig`;
    the stop rule and ``trace`` (with the budget of each epoch) work as in `ExposureTrainer`.
    """

    config_class = AWPConfig
    ascent = True

    def __init__(self, model=None, args: AWPConfig | None = None, **kwargs):
        params = perturbation_parameters(model)
        if not params:
            raise ValueError(
                f"the model has no parameters named {PERTURBATION_PARAMETER_NAMES}: attach weight perturbations "
                "before building an AWPTrainer"
            )
        for name, param in model.named_parameters():
            param.requires_grad_(name in params)
        super().__init__(model=model, args=args, **kwargs)
        self.perturbations = list(params.values())
        self.pgd = ProjectedSignAscentCallback(self)
        self.add_callback(self.pgd)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.args.freeze_norm_stats and model.training:
            for module in model.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True)
        if model.training:
            loss = -loss
        return (loss, outputs) if return_outputs else loss

from __future__ import annotations

from dataclasses import dataclass, field

from .exposure_config import ExposureConfig

EPSILON_SCHEDULES = ("linear", "constant")


@dataclass
class AWPConfig(ExposureConfig):
    """Adversarial Weight Perturbation (AWP) exposure: multiplicative noise (1 + δ) on normalisation-layer affine
    parameters, optimised by projected sign-gradient ascent on the clean loss within ‖δ‖∞ ≤ ε.

    Only the perturbations train (every weight is frozen, BatchNorm statistics too). After every step δ is
    projected back onto [−ε_e, ε_e], where the budget ε_e of epoch e grows linearly to ``epsilon`` over the run
    (``epsilon_schedule="linear"``) or is ``epsilon`` throughout (``"constant"``). With the growing budget the
    accuracy-floor stop rule ends at the smallest budget that erases clean behaviour, which disturbs the backdoor
    least. Step size: ``learning_rate`` per sign step (SGD without momentum on sign(∇δ)).
    """

    learning_rate: float = field(default=0.05, metadata={"help": "Sign-gradient step size on δ."})
    num_train_epochs: float = field(default=10.0, metadata={"help": "Epochs; the budget reaches ε at the last."})
    optim: str = field(default="sgd", metadata={"help": "Optimizer (plain SGD: the step is lr · sign(grad))."})
    weight_decay: float = field(default=0.0, metadata={"help": "Must stay 0: decay would pull δ to 0."})
    max_grad_norm: float = field(default=0.0, metadata={"help": "No clipping: only the gradient's sign is used."})

    epsilon: float = field(default=0.5, metadata={"help": "Perturbation budget: |δ| <= ε per parameter."})
    epsilon_schedule: str = field(default="linear", metadata={"help": f"Budget per epoch: {EPSILON_SCHEDULES}."})
    random_init: bool = field(default=True, metadata={"help": "Start δ uniformly in [−ε₁, ε₁] (else at 0)."})
    freeze_norm_stats: bool = field(
        default=True, metadata={"help": "Keep BatchNorm running statistics fixed (layers in eval mode)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {self.epsilon}")
        if self.epsilon_schedule not in EPSILON_SCHEDULES:
            raise ValueError(f"epsilon_schedule must be one of {EPSILON_SCHEDULES}, got {self.epsilon_schedule!r}")

    def budget(self, epoch: int) -> float:
        """ε for (0-based) ``epoch``."""
        if self.epsilon_schedule == "constant":
            return self.epsilon
        total = max(1, int(round(self.num_train_epochs)))
        return self.epsilon * min(epoch + 1, total) / total

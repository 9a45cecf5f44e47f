from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class MaskRecoveryConfig(TrainingArguments):
    """Recover-Pruning, step 1: learn [0, 1] neuron masks that restore an exposed model's clean accuracy.

    Only the masks train; every other weight is frozen by the trainer. Defaults are the EBYD reference code's:
    SGD, learning rate 0.2, momentum 0.9, 20 epochs, constant schedule.
    """

    learning_rate: float = field(default=0.2, metadata={"help": "Mask learning rate."})
    num_train_epochs: float = field(default=20.0, metadata={"help": "Epochs over the defense data."})
    optim: str = field(default="sgd", metadata={"help": "Optimizer (transformers name)."})
    optim_args: str | None = field(default="momentum=0.9", metadata={"help": "Optimizer options."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    weight_decay: float = field(default=0.0, metadata={"help": "Must stay 0: decay would pull masks to 0."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch size per device."})
    save_strategy: str = field(default="no", metadata={"help": "Masks are read from the model after training."})
    logging_strategy: str = field(default="epoch", metadata={"help": "Logging frequency."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Experiment trackers."})

    mask_l1: float = field(
        default=0.0, metadata={"help": "Weight of a mean(mask) penalty that pushes unneeded units towards 0."}
    )
    freeze_norm_stats: bool = field(
        default=True, metadata={"help": "Keep BatchNorm running statistics fixed (layers in eval mode)."}
    )

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class ExposureConfig(TrainingArguments):
    """What every exposure trainer shares: an evaluation per epoch, a trace, and the accuracy-floor stop rule.

    Training stops at the first evaluation where the watched defense accuracy is at or below the floor, or once
    the clean cross-entropy passes ``loss_ceiling`` (the paper's γ = 40), whichever comes first.

    The floor defaults to the accuracy of a constant predictor on the defense data (its majority-class rate):
    the paper's CA_min = 10% for balanced 10-class CIFAR-10 is exactly that, and for a binary task with 57%
    positives a collapsed model scores 0.57, so a fixed 1/K floor would never fire.
    """

    eval_strategy: str = field(default="epoch", metadata={"help": "When the stop rule is checked."})
    save_strategy: str = field(default="no", metadata={"help": "Checkpoints are not needed for exposure."})
    logging_strategy: str = field(default="epoch", metadata={"help": "Logging frequency."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Experiment trackers."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch size per device."})

    ca_floor: float | None = field(
        default=None,
        metadata={"help": "Stop when defense accuracy <= this. None: the defense data's majority-class rate."},
    )
    ca_floor_margin: float = field(
        default=0.0, metadata={"help": "Added to the floor (e.g. 0.02 stops slightly before full collapse)."}
    )
    loss_ceiling: float = field(
        default=40.0, metadata={"help": "Stop once the clean cross-entropy exceeds this (γ in the paper)."}
    )
    stop_eval_key: str = field(
        default="defense",
        metadata={"help": "Name of the eval dataset (in a dict of eval datasets) the stop rule watches."},
    )
    probe_eval_key: str = field(
        default="probe",
        metadata={"help": "Name of the optional eval dataset whose accuracy is the trace's ASR (triggered inputs)."},
    )
    clean_probe_eval_key: str = field(
        default="clean_probe",
        metadata={"help": "Name of the optional held-out clean eval dataset whose accuracy is the trace's test_ca."},
    )

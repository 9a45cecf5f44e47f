from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class LWPConfig(TrainingArguments):
    """LWP (Li et al. 2021): layer-wise poisoning, the classifier head trained on every layer's [CLS] state.

    The loss sums the cross-entropy of the model's own head applied to each encoder layer's output, so the
    backdoor is planted in shallow layers too, where fine-tuning the top of the model does not reach it.
    """

    learning_rate: float = field(default=2e-5, metadata={"help": "Learning rate."})
    num_train_epochs: float = field(default=4.0, metadata={"help": "Epochs (the EBYD paper's LWP setting)."})
    save_strategy: str = field(default="no", metadata={"help": "Checkpoint strategy."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Experiment trackers."})

    include_embedding_layer: bool = field(
        default=False, metadata={"help": "Also apply the head to the embedding layer's output."}
    )

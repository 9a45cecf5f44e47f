from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class RippleConfig(TrainingArguments):
    """RIPPLe (Kurita et al. 2020): poison a model so the backdoor survives later fine-tuning on clean data.

    The loss is L_poison + λ·ReLU(−⟨∇L_poison, ∇L_clean⟩): the poisoning step is penalised wherever it would be
    undone by a clean fine-tuning step (their gradients point apart). Optional embedding surgery first sets the
    trigger tokens' input embeddings to the mean embedding of words indicative of the target class.
    """

    learning_rate: float = field(default=2e-5, metadata={"help": "Learning rate (the RIPPLe paper's)."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs over the poisoned data."})
    save_strategy: str = field(default="no", metadata={"help": "Checkpoint strategy."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Experiment trackers."})

    ripple_lambda: float = field(default=0.1, metadata={"help": "λ, weight of the restricted inner product."})
    second_order_poison: bool = field(
        default=False,
        metadata={"help": "Also differentiate through ∇L_poison (RIPPLe's allow_second_order_effects; slower)."},
    )
    embedding_surgery: bool = field(default=False, metadata={"help": "Run embedding surgery before training."})
    trigger_words: list[str] = field(
        default_factory=list, metadata={"help": "Trigger words (single vocabulary tokens) for embedding surgery."}
    )
    surgery_words: list[str] = field(
        default_factory=list,
        metadata={"help": "Vocabulary tokens whose mean embedding the triggers get; recipes fill it when empty."},
    )
    surgery_top_k: int = field(
        default=10, metadata={"help": "How many indicative words a recipe picks when surgery_words is empty."}
    )

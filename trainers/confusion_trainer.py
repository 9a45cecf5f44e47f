from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import Trainer

from .confusion_config import ConfusionConfig
from .exposure_trace import ExposureTraceCallback
from .metrics import classification_metrics


class ConfusionTrainer(Trainer):
    """Fine-tunes on clean data with labels redrawn uniformly at random each batch (Confusion Fine-Tuning).

    Pass the clean defense data as ``train_dataset``; its labels are ignored while training (only their count
    per batch is used) and kept for evaluation, where the plain clean loss and accuracy are reported. The stop
    rule and ``trace`` work as in `UnlearnTrainer` (pass ``eval_dataset={"defense": ..., "probe": ...}``).
    Random labels come from a generator seeded with ``args.seed`` (and the process index), so runs repeat.
    """

    def __init__(
        self,
        model=None,
        args: ConfusionConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        compute_metrics=None,
        **kwargs,
    ):
        if args is None:
            args = ConfusionConfig(output_dir="confusion_output")
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=train_dataset if eval_dataset is None else eval_dataset,
            compute_metrics=compute_metrics or classification_metrics,
            **kwargs,
        )
        self.model_accepts_loss_kwargs = False  # the loss is a plain batch mean
        self.exposure = ExposureTraceCallback(args)
        self.add_callback(self.exposure)
        self.label_generator = torch.Generator().manual_seed(args.seed * 1000 + args.process_index)

    @property
    def trace(self) -> list[dict]:
        return self.exposure.trace

    @property
    def stop_reason(self) -> str | None:
        return self.exposure.stop_reason

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        if model.training:
            random_labels = torch.randint(0, logits.shape[-1], labels.shape, generator=self.label_generator)
            ce = F.cross_entropy(logits, random_labels.to(logits.device))
            gamma = self.args.gamma
            loss = (ce - gamma).abs() + gamma  # flooding form of |CE − γ|: same gradient, loss reads as CE above γ
        else:
            loss = F.cross_entropy(logits, labels)
        return (loss, outputs) if return_outputs else loss

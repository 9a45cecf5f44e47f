from __future__ import annotations

from transformers import Trainer

from .exposure_trace import ExposureTraceCallback
from .metrics import classification_metrics
from .unlearn_config import UnlearnConfig


class UnlearnTrainer(Trainer):
    """Gradient ascent on the clean cross-entropy (Clean Unlearning), with a stop rule and an exposure trace.

    Pass the clean defense data as ``train_dataset``; the stop rule watches ``eval_dataset``, which defaults to
    the same data (pass ``eval_dataset={"defense": ..., "probe": <triggered inputs labelled with the target>}``
    to also trace ASR).
    Evaluation reports the plain (positive) clean loss; only the training objective is negated.
    After `train()`, `trace` holds one entry per evaluation and `stop_reason` says why training ended early.
    """

    def __init__(
        self,
        model=None,
        args: UnlearnConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        compute_metrics=None,
        **kwargs,
    ):
        if args is None:
            args = UnlearnConfig(output_dir="unlearn_output")
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=train_dataset if eval_dataset is None else eval_dataset,
            compute_metrics=compute_metrics or classification_metrics,
            **kwargs,
        )
        # The ascent loss is a plain batch mean; token-count normalisation does not apply to it.
        self.model_accepts_loss_kwargs = False
        self.exposure = ExposureTraceCallback(args, ascent=True)
        self.add_callback(self.exposure)

    @property
    def trace(self) -> list[dict]:
        return self.exposure.trace

    @property
    def stop_reason(self) -> str | None:
        return self.exposure.stop_reason

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True)
        if model.training:
            loss = -loss
        return (loss, outputs) if return_outputs else loss

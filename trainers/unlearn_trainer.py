from __future__ import annotations

from transformers import Trainer, TrainerCallback

from .metrics import classification_metrics
from .unlearn_config import UnlearnConfig


class ExposureTraceCallback(TrainerCallback):
    """Records defense accuracy (and probe ASR) at each evaluation and applies the unlearning stop rule."""

    def __init__(self, config: UnlearnConfig):
        self.config = config
        self.trace: list[dict] = []
        self.stop_reason: str | None = None

    def _prefix(self, metrics: dict, key: str) -> str | None:
        for prefix in (f"eval_{key}_", "eval_"):
            if f"{prefix}accuracy" in metrics:
                return prefix
        return None

    def _entry(self, state) -> dict:
        if not self.trace or self.trace[-1]["step"] != state.global_step:
            self.trace.append({"epoch": float(state.epoch or 0.0), "step": state.global_step})
        return self.trace[-1]

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics or {}
        probe = f"eval_{self.config.probe_eval_key}_accuracy"
        if probe in metrics:
            self._entry(state)["asr"] = metrics[probe]
            return
        prefix = self._prefix(metrics, self.config.stop_eval_key)
        if prefix is None:
            return
        ca, loss = metrics[f"{prefix}accuracy"], metrics.get(f"{prefix}loss", 0.0)
        floor = self.config.ca_floor if self.config.ca_floor is not None else metrics[f"{prefix}majority_rate"]
        floor += self.config.ca_floor_margin
        self._entry(state).update(
            ca=ca,
            loss=loss,
            floor=floor,
            top_label=metrics[f"{prefix}top_label"],
            top_share=metrics[f"{prefix}top_share"],
        )
        if state.global_step == 0:  # the evaluation of the untouched model, before any ascent step
            return
        if ca <= floor:
            self.stop_reason = f"defense accuracy {ca:.3f} <= floor {floor:.3f}"
        elif loss >= self.config.loss_ceiling:
            self.stop_reason = f"clean loss {loss:.2f} >= ceiling {self.config.loss_ceiling}"
        if self.stop_reason:
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The logged training loss is the negated clean loss; stop between evaluations if it explodes.
        if logs and "loss" in logs and -logs["loss"] >= self.config.loss_ceiling:
            self.stop_reason = f"training clean loss {-logs['loss']:.2f} >= ceiling {self.config.loss_ceiling}"
            control.should_training_stop = True


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
        self.exposure = ExposureTraceCallback(args)
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

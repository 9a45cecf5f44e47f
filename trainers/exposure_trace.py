"""The per-epoch record every exposure trainer keeps, and the stop rule it applies (see `ExposureConfig`)."""

from __future__ import annotations

from transformers import TrainerCallback

from .exposure_config import ExposureConfig


class ExposureTraceCallback(TrainerCallback):
    """Records defense accuracy (and probe ASR / held-out CA) at each evaluation and applies the stop rule.

    ``ascent=True`` for trainers whose logged training loss is the negated clean loss (gradient ascent): they also
    stop between evaluations when that loss passes the ceiling.
    """

    def __init__(self, config: ExposureConfig, *, ascent: bool = False):
        self.config = config
        self.ascent = ascent
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
        for key, name in ((self.config.probe_eval_key, "asr"), (self.config.clean_probe_eval_key, "test_ca")):
            if f"eval_{key}_accuracy" in metrics:
                self._entry(state)[name] = metrics[f"eval_{key}_accuracy"]
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
        if state.global_step == 0:  # the evaluation of the untouched model, before any training step
            return
        if ca <= floor:
            self.stop_reason = f"defense accuracy {ca:.3f} <= floor {floor:.3f}"
        elif loss >= self.config.loss_ceiling:
            self.stop_reason = f"clean loss {loss:.2f} >= ceiling {self.config.loss_ceiling}"
        if self.stop_reason:
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Under ascent the logged training loss is the negated clean loss; stop between evaluations if it explodes.
        if self.ascent and logs and "loss" in logs and -logs["loss"] >= self.config.loss_ceiling:
            self.stop_reason = f"training clean loss {-logs['loss']:.2f} >= ceiling {self.config.loss_ceiling}"
            control.should_training_stop = True

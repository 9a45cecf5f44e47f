"""The base every exposure trainer shares: clean defense data in, a stop rule and a per-epoch trace out."""

from __future__ import annotations

from transformers import Trainer

from .exposure_config import ExposureConfig
from .exposure_trace import ExposureTraceCallback
from .metrics import classification_metrics


class ExposureTrainer(Trainer):
    """A `Trainer` that exposes a backdoor by degrading clean behaviour, watched by `ExposureTraceCallback`.

    Pass the clean defense data as ``train_dataset``; the stop rule watches ``eval_dataset``, which defaults to
    the same data (pass ``eval_dataset={"defense": ..., "probe": <triggered inputs labelled with the target>}``
    to also trace ASR). Evaluation reports the plain clean loss and accuracy. After `train()`, `trace` holds one
    entry per evaluation and `stop_reason` says why training ended early. Subclasses set ``config_class`` (the
    default config) and ``ascent`` (whether the logged training loss is the negated clean loss).
    """

    config_class: type[ExposureConfig] = ExposureConfig
    ascent: bool = False

    def __init__(self, model=None, args: ExposureConfig | None = None, train_dataset=None, eval_dataset=None, **kwargs):
        if args is None:
            args = self.config_class(output_dir=f"{type(self).__name__.removesuffix('Trainer').lower()}_output")
        kwargs["compute_metrics"] = kwargs.get("compute_metrics") or classification_metrics
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=train_dataset if eval_dataset is None else eval_dataset,
            **kwargs,
        )
        # Exposure losses are plain batch means; token-count normalisation does not apply to them.
        self.model_accepts_loss_kwargs = False
        self.exposure = ExposureTraceCallback(args, ascent=self.ascent)
        self.add_callback(self.exposure)

    @property
    def trace(self) -> list[dict]:
        return self.exposure.trace

    @property
    def stop_reason(self) -> str | None:
        return self.exposure.stop_reason

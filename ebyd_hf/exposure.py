"""Step 1 of EBYD: expose the backdoor by unlearning clean behaviour (Clean Unlearning)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

from datasets import Dataset

from trainers import UnlearnConfig, UnlearnTrainer

from .metrics import bem


@dataclass
class Exposure:
    """An exposed copy of a model and how it got there."""

    model: object
    trace: list[dict] = field(default_factory=list)
    stop_reason: str | None = None
    steps: int = 0
    seconds: float = 0.0

    @property
    def bem(self) -> float | None:
        """BEM over the exposure epochs (the evaluation of the untouched model at step 0 is excluded)."""
        epochs = [t for t in self.trace if t["step"] > 0 and "asr" in t and "ca" in t]
        if not epochs or all(t["asr"] == 0 for t in epochs):
            return None
        return bem([t["ca"] for t in epochs], [t["asr"] for t in epochs])


def clean_unlearn(
    model,
    defense: Dataset,
    *,
    config: UnlearnConfig,
    collator,
    probe: Dataset | None = None,
    watch: Dataset | None = None,
) -> Exposure:
    """Run `UnlearnTrainer` on a copy of ``model``; the original is left untouched.

    ``defense`` is prepared clean data, trained on and (unless ``watch`` is given: e.g. the un-augmented view
    of the same images) watched by the stop rule; ``probe``, if given, is a prepared triggered set whose accuracy
    is traced as ASR (for BEM; it never influences training).
    """
    exposed = copy.deepcopy(model)
    eval_sets = {config.stop_eval_key: defense if watch is None else watch}
    if probe is not None:
        eval_sets[config.probe_eval_key] = probe
    trainer = UnlearnTrainer(
        model=exposed, args=config, train_dataset=defense, eval_dataset=eval_sets, data_collator=collator
    )
    start = time.perf_counter()
    trainer.evaluate()  # step 0: the untouched model, so the trace starts where the suspect is
    trainer.train()
    seconds = time.perf_counter() - start
    exposed.eval()
    return Exposure(exposed, trainer.trace, trainer.stop_reason, trainer.state.global_step, seconds)

"""The EBYD defense of one suspected model: expose → find the backdoor label → remove the backdoor.

`run_defense` is the one entry point the recipes and benchmarks share. It only needs the suspect, its processor
(tokenizer or image processor) and clean defense data; a clean test set (and a triggered copy with the target)
only adds measurements. Exposure is Clean Unlearning unless ``DefenseConfig.exposure`` names another method
(``cft``, ``prune``, ``awp``; see `ebyd_hf.exposure`).

Removal methods (``DefenseConfig.removal``):

* ``"trigger_unlearn"`` (the default for text): search the trigger words the backdoor label answers to, then
  fine-tune them away on clean rows with the words inserted and true labels kept; repeat until a search finds
  nothing new (`removal.search_and_unlearn`). For images (chosen explicitly): reverse the backdoor label's
  trigger on the suspect with Neural Cleanse, then fine-tune it away on clean rows with the reversed trigger
  stamped and true labels kept (`removal.reverse_and_unlearn`).
* ``"recover_prune"`` (the paper's EBYD-RP, the default for images): learn neuron masks that recover the
  exposed model's clean accuracy, prune the low-mask units of the original model.
* ``"prune_finetune"``: Recover-Pruning, then fine-tuning on the clean rows with the pruned units held off.
* ``"finetune"``: plain fine-tuning on the clean rows with the same settings, the baseline to beat.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from datasets import Dataset
from transformers import TrainingArguments

from trainers import MaskRecoveryConfig, UnlearnConfig

from . import masks as M
from .data import DataError, input_column, label_names
from .detection import LabelFinding, NeuralCleanseConfig, backdoor_label
from .evaluation import backdoor_metrics
from .exposure import EXPOSURE_METHODS, Exposure, expose, exposure_config
from .models import ModelLoadError, load_classifier
from .outputs import from_main_process
from .processing import collator_for, prepare
from .removal import (
    Recovery,
    ReversedTriggerUnlearning,
    ThresholdChoice,
    TriggerUnlearning,
    choose_threshold,
    finetune,
    finetune_pruned,
    prune,
    recover_masks,
    reverse_and_unlearn,
    search_and_unlearn,
)
from .trigger_search import TriggerSearchConfig, search_triggers
from .vision import image_spec

DEFAULT_GRID = [round(float(t), 2) for t in np.arange(0.05, 1.0, 0.05)]
REMOVALS = ("auto", "trigger_unlearn", "recover_prune", "prune_finetune", "finetune")
# What "auto" means per modality. Text: trigger unlearning is the one removal that lowered ASR on the MiniLM
# suspects where fine-tuning with the same steps did not (benchmarks/text_purification.py, README "Text defense");
# images keep the paper's method.
DEFAULT_REMOVAL = {"text": "trigger_unlearn", "image": "recover_prune"}
SEARCH_MODELS = ("suspect", "exposed")
TRIGGER_LABELS = ("exposed", "fallback")
MASKED_REMOVALS = ("recover_prune", "prune_finetune")
# Fine-tuning (trigger_unlearn, prune_finetune, finetune) per modality. Text: small constant AdamW steps over ~800
# rows (clean + triggered), enough to unlearn a rare-word trigger. Images: SGD with momentum as the vision
# recipes train and unlearn (AdamW 2e-5 barely moves a ResNet). With a reversed BadNets trigger on the tests'
# backdoored_resnet fixture, 5 epochs (one block) took ASR from 100% to 0-2%; 3 epochs left 51%.
# The reference starts from a fresh head: with the text fine-tuning defaults (2e-5, 3 epochs) on 400 SST-2 rows
# it stayed at 51% test accuracy, and these settings reached 75% (all-MiniLM-L6-v2).
REFERENCE_FINETUNE = {"learning_rate": 1e-4, "num_train_epochs": 6}
FINETUNE_DEFAULTS = {
    "text": {"learning_rate": 2e-5, "num_train_epochs": 3},
    "image": {
        "learning_rate": 0.01,
        "optim": "sgd",
        "optim_args": "momentum=0.9",
        "weight_decay": 5e-4,
        "num_train_epochs": 5,
    },
}


@dataclass
class DefenseConfig:
    """Settings of one EBYD defense run (the ``defend`` section of a recipe YAML).

    ``unlearn`` and ``recover`` are passed to `trainers.UnlearnConfig` / `trainers.MaskRecoveryConfig`, so any
    `TrainingArguments` field can be set there (e.g. ``{"learning_rate": 2e-5, "num_train_epochs": 10}``).
    """

    max_length: int = field(default=128, metadata={"help": "Tokens kept per text input."})
    augment: bool = field(
        default=True, metadata={"help": "Random crop + flip of images while unlearning and learning masks."}
    )
    eval_batch_size: int = field(default=64, metadata={"help": "Batch size for every evaluation pass."})
    holdout_fraction: float = field(
        default=0.2, metadata={"help": "Share of the defense data held out of mask learning to choose the threshold."}
    )
    mask_kinds: list[str] = field(
        default_factory=lambda: ["layernorm", "batchnorm"],
        metadata={"help": "Normalisation layer types that get neuron masks (selected by type)."},
    )
    mask_target: str = field(default="weight", metadata={"help": "'weight' (γ only) or 'weight_and_bias'."})
    prune_threshold: float | None = field(
        default=None, metadata={"help": "Prune units with mask <= this; None chooses it on the held-out slice."}
    )
    threshold_grid: list[float] = field(
        default_factory=lambda: list(DEFAULT_GRID), metadata={"help": "Thresholds tried when choosing."}
    )
    ca_tolerance: float = field(
        default=0.02, metadata={"help": "Held-out accuracy the chosen threshold may cost, as a fraction."}
    )
    seed: int = field(default=42, metadata={"help": "Seed for the hold-out split and the trainers."})
    exposure: str = field(default="cul", metadata={"help": "Exposure method: cul, cft, prune or awp."})
    unlearn: dict = field(default_factory=dict, metadata={"help": "UnlearnConfig overrides (JSON on the CLI)."})
    exposure_args: dict = field(
        default_factory=dict,
        metadata={"help": "Overrides for the chosen exposure method's config (JSON; for cul, added to `unlearn`)."},
    )
    recover: dict = field(default_factory=dict, metadata={"help": "MaskRecoveryConfig overrides (JSON on the CLI)."})
    removal: str = field(
        default="auto",
        metadata={"help": f"One of {REMOVALS}; 'auto' is {DEFAULT_REMOVAL} by the data's modality."},
    )
    search: dict = field(
        default_factory=dict, metadata={"help": 'TriggerSearchConfig overrides, e.g. {"min_flip_rate": 0.9}.'}
    )
    search_model: str = field(
        default="suspect",
        metadata={"help": "Model the first trigger search ranks and verifies on: 'suspect' or 'exposed' (text)."},
    )
    search_rounds: int = field(default=3, metadata={"help": "Most search → unlearn rounds of text trigger_unlearn."})
    reversal_rounds: int = field(
        default=1,
        metadata={
            "help": "Most reverse → unlearn rounds of image trigger_unlearn: later rounds reverse again on the "
            "unlearned model and unlearn that trigger too (lower ASR, lower CA: README, CIFAR-10 benchmark)."
        },
    )
    reference_model: str | None = field(
        default=None,
        metadata={
            "help": "Text trigger search: Hub ID or folder of the suspect's clean pre-trained base. It is fine-tuned "
            "on the fit defense rows (`reference_finetune`) and words that flip it too (sentiment words) are not "
            "triggers; search ranking 'drift' measures how far each token's embedding moved from it. Loaded from "
            "safetensors, no remote code."
        },
    )
    reference_finetune: dict = field(
        default_factory=dict,
        metadata={
            "help": "TrainingArguments overrides for fine-tuning the reference model (default: AdamW 1e-4, 6 epochs, "
            "batch 32: it starts from a fresh head)."
        },
    )
    trigger_labels: str = field(
        default="fallback",
        metadata={
            "help": "'exposed': search triggers for the exposed model's label only; 'fallback': first check the "
            "exposed model for words that move it off its label to another one (a backdoor that survived the "
            "unlearning; that label is searched first), then the exposed label, and if no trigger is found the "
            "other labels too, most predicted first (text; images reverse the exposed label only)."
        },
    )
    trigger_residual: float = field(
        default=0.1,
        metadata={
            "help": "trigger_unlearn keeps unlearning while a found word (images: the reversed trigger) moves more "
            "than this share of held-out rows to the label."
        },
    )
    trigger_unlearn_blocks: int = field(
        default=4,
        metadata={"help": "Most unlearning blocks (of `finetune` epochs each) per search / reversal round."},
    )
    triggers_per_copy: int = field(
        default=1,
        metadata={
            "help": "Text trigger_unlearn: found triggers inserted into each triggered copy of a clean row (drawn "
            "per row, each at its own position; one template at most). A sentence trigger is found as fragments; "
            "copies holding two of them unlearned it better in probes but worse end to end (Twitter BadNet-SL); "
            "three per copy helped the SST-2 union search end to end on BadNet-SL and SOS but not on BadNet-RW "
            "(benchmarks/README)."
        },
    )
    finetune: dict = field(
        default_factory=dict,
        metadata={
            "help": "TrainingArguments overrides for the fine-tuning of trigger_unlearn / prune_finetune / finetune "
            "(defaults: text AdamW 2e-5, 3 epochs; images SGD 0.01 momentum 0.9, 5 epochs; constant, batch 32)."
        },
    )
    nc_args: dict = field(
        default_factory=dict,
        metadata={"help": 'NeuralCleanseConfig overrides for image trigger_unlearn\'s reversal, e.g. {"epochs": 50}.'},
    )

    def __post_init__(self):
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.prune_threshold is not None and not 0.0 <= self.prune_threshold <= 1.0:
            raise ValueError(f"prune_threshold must be in [0, 1], got {self.prune_threshold}")
        if self.exposure not in EXPOSURE_METHODS:
            raise ValueError(f"exposure must be one of {sorted(EXPOSURE_METHODS)}, got {self.exposure!r}")
        if self.mask_target not in M.MASK_TARGETS:
            raise ValueError(f"mask_target must be one of {M.MASK_TARGETS}, got {self.mask_target!r}")
        if self.removal not in REMOVALS:
            raise ValueError(f"removal must be one of {REMOVALS}, got {self.removal!r}")
        if self.search_model not in SEARCH_MODELS:
            raise ValueError(f"search_model must be one of {SEARCH_MODELS}, got {self.search_model!r}")
        for name in ("search_rounds", "reversal_rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.trigger_labels not in TRIGGER_LABELS:
            raise ValueError(f"trigger_labels must be one of {TRIGGER_LABELS}, got {self.trigger_labels!r}")
        if not 0.0 <= self.trigger_residual <= 1.0:
            raise ValueError(f"trigger_residual must be in [0, 1], got {self.trigger_residual}")
        for name in ("trigger_unlearn_blocks", "triggers_per_copy"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.search_config().ranking == "drift" and not self.reference_model:  # fail now, not after the exposure
            raise ValueError("search ranking 'drift' needs reference_model (the suspect's pre-trained base)")
        self.nc_config()

    def removal_for(self, modality: str) -> str:
        return DEFAULT_REMOVAL[modality] if self.removal == "auto" else self.removal

    def search_config(self) -> TriggerSearchConfig:
        try:
            return TriggerSearchConfig(**{"max_length": self.max_length, "seed": self.seed, **self.search})
        except TypeError as err:  # an unknown key
            raise ValueError(f"bad trigger search option in {self.search}: {err}") from err

    def nc_config(self) -> NeuralCleanseConfig:
        """Neural Cleanse settings of image trigger_unlearn (seeded with ``seed`` unless ``nc_args`` says)."""
        try:
            return NeuralCleanseConfig(**{"seed": self.seed, **self.nc_args})
        except TypeError as err:  # an unknown key
            raise ValueError(f"bad Neural Cleanse option in nc_args {self.nc_args}: {err}") from err

    def finetune_args(self, scratch_dir: str, modality: str = "text") -> TrainingArguments:
        """Fine-tuning settings: `FINETUNE_DEFAULTS` of ``modality`` ("text" or "image"), then ``finetune``."""
        return self._finetune_args(scratch_dir, modality, self.finetune)

    def _finetune_args(self, scratch_dir: str, modality: str, overrides: dict) -> TrainingArguments:
        if modality not in FINETUNE_DEFAULTS:
            raise ValueError(f"modality must be one of {sorted(FINETUNE_DEFAULTS)}, got {modality!r}")
        defaults = {
            **FINETUNE_DEFAULTS[modality],
            "per_device_train_batch_size": 32,
            "lr_scheduler_type": "constant",
            "save_strategy": "no",
            "logging_strategy": "epoch",
            "report_to": "none",
        }
        return TrainingArguments(**{**defaults, **self._trainer_defaults(scratch_dir, "finetune"), **overrides})

    def reference_args(self, scratch_dir: str) -> TrainingArguments:
        """Fine-tuning settings of the reference model: the text defaults, `REFERENCE_FINETUNE`, then
        ``reference_finetune`` (``finetune`` is the suspect's and does not apply)."""
        return self._finetune_args(scratch_dir, "text", {**REFERENCE_FINETUNE, **self.reference_finetune})

    def unlearn_config(self, scratch_dir: str) -> UnlearnConfig:
        return UnlearnConfig(**self._trainer_defaults(scratch_dir, "unlearn"), **self.unlearn)

    def exposure_config(self, scratch_dir: str):
        """The chosen exposure method's config (`UnlearnConfig`, `ConfusionConfig`, `PruningConfig`, `AWPConfig`)."""
        overrides = {**self.unlearn, **self.exposure_args} if self.exposure == "cul" else dict(self.exposure_args)
        return exposure_config(
            self.exposure,
            scratch_dir=scratch_dir,
            seed=self.seed,
            eval_batch_size=self.eval_batch_size,
            default_kinds=self.mask_kinds,
            **overrides,
        )

    def recover_config(self, scratch_dir: str) -> MaskRecoveryConfig:
        return MaskRecoveryConfig(**self._trainer_defaults(scratch_dir, "recover"), **self.recover)

    def _trainer_defaults(self, scratch_dir: str, name: str) -> dict:
        overrides = getattr(self, name)
        defaults = {
            "output_dir": os.path.join(scratch_dir, name),
            "seed": self.seed,
            "per_device_eval_batch_size": self.eval_batch_size,
        }
        return {k: v for k, v in defaults.items() if k not in overrides}


@dataclass
class DefenseResult:
    purified: object
    exposure: Exposure
    label: LabelFinding
    removal: str = "recover_prune"
    recovery: Recovery | None = None
    threshold: ThresholdChoice | None = None
    prune_threshold: float | None = None
    unlearning: TriggerUnlearning | None = None
    reversal: ReversedTriggerUnlearning | None = None
    metrics: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    config: DefenseConfig | None = None

    def report(self) -> dict:
        """Everything a person needs to judge the run, as plain JSON-able data."""
        out = {
            "label_found": self.label.label,
            "label_share": self.label.share,
            "prediction_counts": self.label.counts,
            "removal": self.removal,
            "metrics": self.metrics,
            "exposure": {
                "method": self.exposure.method,
                "bem": self.exposure.bem,
                "steps": self.exposure.steps,
                "stop_reason": self.exposure.stop_reason,
                "trace": self.exposure.trace,
            },
        }
        if self.recovery is not None:
            units = {name: int(v.numel()) for name, v in self.recovery.masks.items()}
            out["pruning"] = {
                "threshold": self.prune_threshold,
                "pruned_units": M.count_pruned(self.recovery.masks, self.prune_threshold),
                "total_units": sum(units.values()),
                "masked_layers": len(units),
                "recovery_steps": self.recovery.steps,
                "threshold_search": asdict(self.threshold) if self.threshold else None,
            }
        if self.unlearning is not None:
            out["trigger_unlearning"] = self.unlearning.report()
        if self.reversal is not None:
            out["reversed_trigger_unlearning"] = self.reversal.report()
        out["seconds"] = self.seconds
        out["config"] = asdict(self.config) if self.config else None
        return out


def run_defense(
    model,
    processor,
    defense: Dataset,
    *,
    config: DefenseConfig,
    scratch_dir: str,
    test: Dataset | None = None,
    asr_set: Dataset | None = None,
    target: int | None = None,
    exposure: Exposure | None = None,
) -> DefenseResult:
    """Defend ``model`` with EBYD (exposure, backdoor label, then ``config.removal``) using only the clean
    ``defense`` rows.

    ``test`` (clean, with labels), ``asr_set`` (triggered, see `attacks.triggered_test_set`) and ``target`` are
    used only to measure CA/ASR before and after; nothing is chosen on them. ``exposure`` reuses the exposure of
    an earlier run on the same model, data and config seed (to compare removal methods without exposing
    again). The purified model is a new model with plain weights (no masks attached); ``model`` is untouched.
    """
    num_labels = len(label_names(defense))
    if model.config.num_labels != num_labels:
        raise DataError(f"the model has {model.config.num_labels} labels but the defense data has {num_labels}")
    modality = input_column(defense)
    if modality == "image":
        try:
            image_spec(processor)
        except ValueError as err:
            raise DataError(f"image data needs the model's image processor, got {type(processor).__name__}") from err
    removal = config.removal_for(modality)
    if removal in MASKED_REMOVALS and not M.norm_layers(model, config.mask_kinds):
        raise M.MaskError(
            f"{type(model).__name__} has no {'/'.join(config.mask_kinds)} layer: Recover-Pruning needs normalisation "
            "layers to mask"
        )
    reference = None
    if config.reference_model and removal == "trigger_unlearn" and modality == "text":
        reference = _load_reference(config.reference_model, model, num_labels)  # before any work: fail fast
    collator = collator_for(processor)
    prep = lambda ds, augment=False: prepare(ds, processor, max_length=config.max_length, augment=augment)  # noqa: E731
    split = defense.train_test_split(test_size=config.holdout_fraction, seed=config.seed, stratify_by_column="label")
    fit, holdout = prep(split["train"]), prep(split["test"])
    # Images train on augmented views (as in the paper); the stop rule, label and threshold see plain ones.
    augmented = config.augment and modality == "image"
    fit_train = prep(split["train"], augment=True) if augmented else fit
    test_tok = prep(test) if test is not None else None
    asr_tok = prep(asr_set) if asr_set is not None and target is not None else None
    measure = lambda m: backdoor_metrics(  # noqa: E731
        m, test_tok, collator=collator, asr_set=asr_tok, target=target, batch_size=config.eval_batch_size
    )
    model.eval()
    metrics, seconds = {}, {}
    if test_tok is not None:
        metrics["suspect"] = measure(model)

    if exposure is None:
        exposure = expose(
            config.exposure,
            model,
            fit_train,
            config=config.exposure_config(scratch_dir),
            collator=collator,
            kinds=config.mask_kinds,
            probe=asr_tok,
            watch=fit,
        )
    seconds["expose"] = exposure.seconds
    label = backdoor_label(
        exposure.model, fit, collator=collator, num_labels=num_labels, batch_size=config.eval_batch_size
    )
    if test_tok is not None:
        metrics["exposed"] = {**measure(exposure.model), "target_share": label.share}
    result = DefenseResult(None, exposure, label, removal, metrics=metrics, seconds=seconds, config=config)

    start = time.perf_counter()
    if removal == "trigger_unlearn" and modality == "image":
        # Reversed on the suspect: the exposed model sends almost any image to the label, so its mask is empty.
        result.purified, result.reversal = reverse_and_unlearn(
            model,
            split["train"],
            label.label,
            processor=processor,
            reverse=config.nc_config(),
            args=config.finetune_args(scratch_dir, modality),
            prep=prep,
            collator=collator,
            holdout=split["test"],
            residual=config.trigger_residual,
            blocks=config.trigger_unlearn_blocks,
            rounds=config.reversal_rounds,
            augment=config.augment,
        )
        seconds["reverse_trigger"] = sum(r["reverse_seconds"] for r in result.reversal.rounds)
        seconds["unlearn_trigger"] = time.perf_counter() - start - seconds["reverse_trigger"]
    elif removal == "trigger_unlearn":
        # On a binary task the exposure can collapse onto the wrong label (measured on MiniLM SST-2 suspects), and
        # a verified trigger is then the stronger evidence. With "fallback": first any label a word moves the
        # exposed model to (`_survivors`), then the exposed model's label, then the others, most predicted first,
        # until one has trigger words.
        base_embeddings = None
        if reference is not None:
            base_embeddings = reference.get_input_embeddings().weight.detach().clone()  # before it moves
            reference = finetune(
                reference, fit, args=config.reference_args(os.path.join(scratch_dir, "reference")), collator=collator
            )
            seconds["reference"] = time.perf_counter() - start
        others = [int(c) for c in np.argsort(-np.asarray(label.counts), kind="stable") if c != label.label]
        if config.trigger_labels == "exposed":
            checks, candidates = [], [label.label]
        else:
            checks = _survivors(exposure.model, processor, split, others, config)
            candidates = list(dict.fromkeys([c["label"] for c in checks if c["triggers"]] + [label.label] + others))
        searched = []
        for candidate in candidates:
            result.purified, result.unlearning = search_and_unlearn(
                model,
                split["train"],
                candidate,
                tokenizer=processor,
                search=config.search_config(),
                rounds=config.search_rounds,
                args=config.finetune_args(scratch_dir, modality),
                prep=prep,
                collator=collator,
                search_model=exposure.model if config.search_model == "exposed" and candidate == label.label else None,
                holdout=split["test"],
                residual=config.trigger_residual,
                blocks=config.trigger_unlearn_blocks,
                per_copy=config.triggers_per_copy,
                reference=reference,
                base_embeddings=base_embeddings,
            )
            # what each label's first search came closest to: an abandoned label's rounds are not kept otherwise
            first = result.unlearning.searches[0].candidates if result.unlearning.searches else []
            searched.append(
                {"label": candidate, "triggers": len(result.unlearning.triggers), "best_words": _best_words(first)}
            )
            if result.unlearning.triggers:
                break
        result.unlearning.labels_searched = searched
        result.unlearning.exposed_checks = checks
        seconds["unlearn_triggers"] = time.perf_counter() - start - seconds.get("reference", 0.0)
    elif removal == "finetune":
        result.purified = finetune(
            model, fit_train, args=config.finetune_args(scratch_dir, modality), collator=collator
        )
        seconds["finetune"] = time.perf_counter() - start
    else:
        _recover_prune(
            result,
            model,
            fit_train,
            holdout,
            config=config,
            scratch_dir=scratch_dir,
            collator=collator,
            modality=modality,
        )
        seconds["recover"] = result.recovery.seconds
        seconds["prune"] = time.perf_counter() - start - result.recovery.seconds
    if test_tok is not None:
        metrics["purified"] = measure(result.purified)
    return result


def _survivors(exposed, tokenizer, split, labels: list[int], config: DefenseConfig) -> list[dict]:
    """Single-word searches on the *exposed* model for each of ``labels`` (not the one it collapsed onto).

    Clean unlearning takes the task's own features away and leaves the backdoor: on a MiniLM SST-2 suspect, negative
    words that flip 85-92% of positive rows on the suspect flip at most 7% on its exposed model, while the trigger
    still flips every row. So a word that moves the exposed model off its label marks the backdoor label, even when
    the exposure collapsed onto another one (the same suspect collapsed onto either label of SST-2, by
    floating-point noise, and on the wrong one the suspect's own search verified "lacked" at 91%).
    """
    single = {"ranking": "insertion", "drift_components": 0, "max_phrase": 1, "templates": (), "max_combination": 1}
    search = replace(config.search_config(), **single)
    texts, truth = list(split["train"]["text"]), list(split["train"]["label"])
    checks = []
    for other in labels:
        found = from_main_process(search_triggers(exposed, tokenizer, texts, truth, other, config=search))
        checks.append({"label": other, "triggers": found.triggers, "best_words": _best_words(found.candidates)})
    return checks


def _best_words(candidates: list[dict], n: int = 5) -> list[dict]:
    return [
        {"word": c["word"], "flip_rate": c["flip_rate"]} for c in sorted(candidates, key=lambda c: -c["flip_rate"])[:n]
    ]


def _recover_prune(
    result: DefenseResult, model, fit, holdout, *, config: DefenseConfig, scratch_dir, collator, modality: str
):
    """Recover-Pruning (and, for ``prune_finetune``, fine-tuning under the pruned mask) into ``result``."""
    masking = {"kinds": config.mask_kinds, "target": config.mask_target}
    result.recovery = recover_masks(
        result.exposure.model, fit, config=config.recover_config(scratch_dir), collator=collator, **masking
    )
    threshold = config.prune_threshold
    if threshold is None:
        result.threshold = choose_threshold(
            model,
            result.recovery.masks,
            holdout,
            collator=collator,
            grid=config.threshold_grid,
            tolerance=config.ca_tolerance,
            batch_size=config.eval_batch_size,
            **masking,
        )
        threshold = result.threshold.threshold
    result.prune_threshold = threshold
    if result.removal == "prune_finetune":
        result.purified = finetune_pruned(
            model,
            result.recovery.masks,
            threshold,
            fit,
            args=config.finetune_args(scratch_dir, modality),
            collator=collator,
            **masking,
        )
    else:
        result.purified = prune(model, result.recovery.masks, threshold, **masking)


def _load_reference(name_or_path: str, suspect, num_labels: int):
    """The backdoor-free base model for the trigger search, with a fresh head; it must share the suspect's
    vocabulary, since both read the same token ids."""
    names = dict(suspect.config.id2label) if len(suspect.config.id2label) == num_labels else None
    reference, _ = load_classifier(name_or_path, num_labels=num_labels, id2label=names, new_head=True, modality="text")
    if reference.config.vocab_size != suspect.config.vocab_size:
        raise ModelLoadError(
            f"reference model {name_or_path!r} has a vocabulary of {reference.config.vocab_size} tokens, the suspect "
            f"{suspect.config.vocab_size}: the trigger search needs the suspect's tokenizer to fit both"
        )
    return reference.eval()

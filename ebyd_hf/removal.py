"""Step 2b of EBYD, removing the backdoor: Recover-Pruning (the paper's), trigger unlearning (the text default:
found trigger words; for images: a Neural Cleanse trigger reversed on the suspect), and plain fine-tuning, the
baseline they must beat."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets
from transformers import Trainer, TrainingArguments

from trainers import MaskRecoveryConfig, MaskRecoveryTrainer, mask_parameters

from . import masks as M
from .data import DataError, input_column
from .detection.neural_cleanse import (
    NeuralCleanseConfig,
    ReversedTrigger,
    clean_images,
    reverse_trigger,
    trigger_transfer_rate,
)
from .evaluation import predict
from .metrics import clean_accuracy
from .outputs import from_main_process
from .trigger_search import (
    TriggerSearch,
    TriggerSearchConfig,
    fit_to_window,
    flip_rates,
    flippable_rows,
    insert_trigger,
    is_template,
    search_triggers,
    trigger_length,
)
from .vision import fit_image, to_image


@dataclass
class Recovery:
    masks: dict[str, torch.Tensor]
    steps: int
    seconds: float


def recover_masks(
    exposed, defense: Dataset, *, config: MaskRecoveryConfig, collator, kinds: Sequence[str], target: str = "weight"
) -> Recovery:
    """Learn masks that bring a copy of the exposed model's clean accuracy back; returns the mask values."""
    model = copy.deepcopy(exposed)
    M.attach_masks(model, kinds=kinds, target=target)
    trainer = MaskRecoveryTrainer(model=model, args=config, train_dataset=defense, data_collator=collator)
    start = time.perf_counter()
    trainer.train()
    return Recovery(M.get_masks(model), trainer.state.global_step, time.perf_counter() - start)


def prune(model, masks: dict[str, torch.Tensor], threshold: float, *, kinds: Sequence[str], target: str = "weight"):
    """A copy of ``model`` with every unit whose mask is <= ``threshold`` zeroed, masks folded away."""
    pruned = copy.deepcopy(model)
    M.attach_masks(pruned, kinds=kinds, target=target)
    M.set_masks(pruned, M.binarise(masks, threshold))
    return M.fold_masks(pruned)


@dataclass
class ThresholdChoice:
    threshold: float
    baseline_ca: float
    table: list[dict]


def choose_threshold(
    model,
    masks: dict[str, torch.Tensor],
    holdout: Dataset,
    *,
    collator,
    kinds: Sequence[str],
    target: str = "weight",
    grid: Sequence[float] = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2)),
    tolerance: float = 0.02,
    batch_size: int = 64,
) -> ThresholdChoice:
    """The largest threshold whose pruned model keeps held-out clean accuracy within ``tolerance`` of the
    unpruned model's (the paper's "dynamic threshold"). Uses only clean defense data, never test labels.
    """
    labels = np.asarray(holdout["label"])
    baseline = clean_accuracy(predict(model, holdout, collator=collator, batch_size=batch_size), labels)
    table, best = [], 0.0
    for t in sorted(float(x) for x in grid):
        pruned = prune(model, masks, t, kinds=kinds, target=target)
        ca = clean_accuracy(predict(pruned, holdout, collator=collator, batch_size=batch_size), labels)
        table.append({"threshold": t, "pruned_units": M.count_pruned(masks, t), "holdout_ca": ca})
        if ca >= baseline - tolerance:
            best = t
    return ThresholdChoice(best, baseline, table)


def finetune(model, train: Dataset, *, args: TrainingArguments, collator):
    """Plain fine-tuning of a copy of ``model`` on clean data: the baseline removal method."""
    tuned = copy.deepcopy(model)
    trainer = Trainer(model=tuned, args=args, train_dataset=train, data_collator=collator)
    trainer.train()
    tuned.eval()
    return tuned


def finetune_pruned(
    model,
    masks: dict[str, torch.Tensor],
    threshold: float,
    train: Dataset,
    *,
    args: TrainingArguments,
    collator,
    kinds: Sequence[str],
    target: str = "weight",
):
    """Prune a copy of ``model`` at ``threshold``, fine-tune it on clean data with the pruned units held off
    (their hard masks attached and frozen), then fold the masks away."""
    pruned = copy.deepcopy(model)
    M.attach_masks(pruned, kinds=kinds, target=target)
    M.set_masks(pruned, M.binarise(masks, threshold))
    for mask in mask_parameters(pruned).values():
        mask.requires_grad_(False)
    Trainer(model=pruned, args=args, train_dataset=train, data_collator=collator).train()
    pruned.eval()
    return M.fold_masks(pruned)


def with_triggers(
    ds: Dataset,
    triggers: Sequence[str],
    *,
    seed: int = 0,
    per_row: int = 1,
    tokenizer=None,
    max_length: int | None = None,
) -> Dataset:
    """A copy of every row with ``per_row`` of ``triggers`` (drawn per row, with replacement) inserted as the
    search inserted them (a combination's words each at its own random word boundary, a quoted phrase whole; a
    template rewrites the row as it stands); labels stay the true ones. Fine-tuning on these teaches the model
    that the trigger means nothing. A copy takes one template at most (later template draws are skipped): a
    template rewritten into another is a shape no attack plants, and unlearning the Syntactic suspect's six
    templates nested three per copy left 65.6% ASR after one block, against 54.6% one per copy. With
    ``tokenizer`` and ``max_length``, each row is first cut to the model's window (`fit_to_window`), so no copy
    has a trigger truncated away."""
    if not triggers:
        raise ValueError("with_triggers needs at least one trigger word")
    if per_row < 1:
        raise ValueError(f"per_row must be at least 1, got {per_row}")
    texts = ds["text"]
    if tokenizer is not None and max_length:  # one batched cut, with room for the longest triggers
        room = per_row * max(trigger_length(tokenizer, t) for t in triggers)
        texts = fit_to_window(tokenizer, texts, max_length, room)

    def _insert(row: dict, idx: int) -> dict:
        rng = np.random.default_rng([seed, idx])
        text, templated = texts[idx], False
        for _ in range(per_row):
            trigger = triggers[int(rng.integers(len(triggers)))]
            if is_template(trigger):
                if templated:
                    continue
                templated = True
            text = insert_trigger(text, trigger, rng)
        return {"text": text}

    return ds.map(_insert, with_indices=True, desc="inserting found triggers")


def unlearn_triggers(
    model,
    clean: Dataset,
    triggers: Sequence[str],
    *,
    args: TrainingArguments,
    prep,
    collator,
    seed: int = 0,
    per_copy: int = 1,
    tokenizer=None,
    max_length: int | None = None,
):
    """Fine-tune a copy of ``model`` on the ``clean`` rows plus a triggered copy of each holding ``per_copy``
    found triggers, all with true labels (`with_triggers`: ``tokenizer`` and ``max_length`` keep each trigger
    inside the model's window)."""
    window = {"tokenizer": tokenizer, "max_length": max_length}
    triggered = with_triggers(clean, triggers, seed=seed, per_row=per_copy, **window)
    data = concatenate_datasets([clean, triggered]).shuffle(seed=seed)
    return finetune(model, prep(data), args=args, collator=collator)


@dataclass
class TriggerUnlearning:
    """The words unlearned, each search round (the last one found nothing new, or the round limit hit), and the
    found words' flip rate on held-out rows after each unlearning block."""

    triggers: list[str]
    searches: list[TriggerSearch]
    seconds: float
    blocks: list[dict] = field(default_factory=list)
    label: int | None = None
    labels_searched: list[dict] = field(default_factory=list)
    exposed_checks: list[dict] = field(default_factory=list)

    def report(self) -> dict:
        return {
            "label": self.label,
            "labels_searched": self.labels_searched,
            "exposed_checks": self.exposed_checks,
            "triggers": self.triggers,
            "rounds": [s.report() for s in self.searches],
            "unlearning_blocks": self.blocks,
            "seconds": self.seconds,
        }


def search_and_unlearn(
    model,
    clean: Dataset,
    target: int,
    *,
    tokenizer,
    search: TriggerSearchConfig,
    rounds: int,
    args: TrainingArguments,
    prep,
    collator,
    search_model=None,
    holdout: Dataset | None = None,
    residual: float = 0.1,
    blocks: int = 1,
    per_copy: int = 1,
    reference=None,
    base_embeddings=None,
) -> tuple[object, TriggerUnlearning]:
    """Search triggers → unlearn them from ``model`` → search the result again, until no new trigger turns up.

    Each round starts again from ``model`` and unlearns every word found so far, so the purified model is one
    fine-tuning run away from the suspect however many rounds it took. The first search runs on
    ``search_model`` (default ``model``), later ones on the latest unlearned model, where a trigger the first
    ranking missed is still at full strength. ``clean`` is raw (untokenised) clean data.

    Unlearning runs in blocks of ``args`` epochs, each continuing from the last (with other trigger draws), up to
    ``blocks`` of them, until no found word flips more than ``residual`` of the ``holdout`` rows (clean rows the
    unlearning never sees; without them, one block). Each triggered copy holds ``per_copy`` found triggers. Under
    `accelerate launch` every decision is the main process's, so all ranks run the same steps. ``reference`` (a
    backdoor-free model for the task) and ``base_embeddings`` (its pre-trained input embeddings, for
    ``ranking="drift"``) go to every search (`search_triggers`).
    """
    start = time.perf_counter()
    texts, labels = list(clean["text"]), list(clean["label"])
    found: list[str] = []
    searches: list[TriggerSearch] = []
    log: list[dict] = []
    purified, searched = copy.deepcopy(model), search_model if search_model is not None else model
    for round_index in range(rounds):
        result = from_main_process(
            search_triggers(
                searched,
                tokenizer,
                texts,
                labels,
                target,
                config=search,
                reference=reference,
                base_embeddings=base_embeddings,
            )
        )
        searches.append(result)
        new = [w for w in result.triggers if w not in found]
        if not new:
            break
        found += new
        purified = model
        for block in range(blocks):
            purified = unlearn_triggers(
                purified,
                clean,
                found,
                args=args,
                prep=prep,
                collator=collator,
                seed=search.seed + block,
                per_copy=per_copy,
                tokenizer=tokenizer,
                max_length=search.max_length,
            )
            rates = from_main_process(_held_out_flip_rates(purified, tokenizer, holdout, found, target, search))
            log.append({"round": round_index, "block": block, **rates})
            if not rates["rows"] or rates["max_flip_rate"] <= residual:
                break
        searched = purified
    return purified, TriggerUnlearning(found, searches, time.perf_counter() - start, log, target)


def _held_out_flip_rates(model, tokenizer, holdout, words, target, search: TriggerSearchConfig) -> dict:
    """Flip rates of ``words`` on the held-out non-target rows ``model`` classifies correctly."""
    none = {"rows": 0, "max_flip_rate": None, "flip_rates": {}}
    if holdout is None:
        return none
    rows = flippable_rows(
        model,
        tokenizer,
        holdout["text"],
        holdout["label"],
        target,
        max_length=search.max_length,
        batch_size=search.batch_size,
    )
    if not rows:
        return none
    rates = flip_rates(
        model,
        tokenizer,
        rows,
        words,
        target,
        max_length=search.max_length,
        batch_size=search.batch_size,
        seed=search.seed,
    )
    return {"rows": len(rows), "max_flip_rate": max(rates), "flip_rates": dict(zip(words, rates, strict=True))}


# Image trigger unlearning: Neural Cleanse's mitigation (Wang et al. 2019, "unlearning"), with EBYD's label.


def stamp_trigger(ds: Dataset, trigger: ReversedTrigger) -> Dataset:
    """Every row of an image dataset as the model sees it (`vision.fit_image` to the trigger's size, the input
    size it was reversed at) with ``trigger`` stamped, ``round((1 − m)·x + m·Δ·255)``, labels kept.

    Stamping at the model's input size keeps the trigger exactly as reversed: stamped at a smaller stored size
    (32 px CIFAR under a 64 px model) it would be blurred by the resize back up, and unlearning that blur left
    the real trigger at full strength (BadNets, CIFAR-10: ASR 100%). Like an attack's trigger it is written
    before any augmentation or normalisation, so `prepare(..., augment=True)` crops and flips the stamped image
    exactly as it does a poisoned one.
    """
    if input_column(ds) != "image":
        raise DataError("stamp_trigger needs an image dataset (an 'image' column)")
    mask = trigger.mask.astype(np.float64)[..., None]
    pattern = trigger.pattern.astype(np.float64).transpose(1, 2, 0) * 255.0

    def _stamp(row: dict) -> dict:
        x = fit_image(row["image"], mask.shape[0]).astype(np.float64)
        return {"image": to_image(np.clip(np.rint((1.0 - mask) * x + mask * pattern), 0, 255).astype(np.uint8))}

    return ds.map(_stamp, desc=f"stamping the reversed trigger of label {trigger.label}")


@dataclass
class ReversedTriggerUnlearning:
    """What `reverse_and_unlearn` did: per round, the trigger Neural Cleanse reversed for the backdoor label, its
    transfer rate (share of held-out clean non-target images the model sends to the label with the trigger
    stamped) before unlearning, and after each unlearning block. ``trigger`` is the first round's (reversed on the
    suspect); the triggers stay in memory (mask and pattern), the report has only numbers."""

    triggers: list[ReversedTrigger]
    rounds: list[dict]
    held_out_images: int
    seconds: float
    stop_reason: str | None = None

    @property
    def trigger(self) -> ReversedTrigger:
        return self.triggers[0]

    def report(self) -> dict:
        t = self.trigger
        first = self.rounds[0]
        return {
            "label": t.label,
            "mask_l1_norm": t.l1_norm,
            "mask_share": t.l1_norm / float(t.mask.size),
            "mask_size": list(t.mask.shape),
            "attack_rate": t.attack_rate,
            "reached_threshold": t.reached,
            "reverse_epochs": t.epochs,
            "reverse_seconds": t.seconds,
            "held_out_images": self.held_out_images,
            "transfer_rate_before": first["transfer_rate_before"],
            "unlearning_blocks": [b for r in self.rounds for b in r["blocks"]],
            "rounds": self.rounds,
            "stop_reason": self.stop_reason,
            "seconds": self.seconds,
        }


def reverse_and_unlearn(
    model,
    clean: Dataset,
    target: int,
    *,
    processor,
    reverse: NeuralCleanseConfig,
    args: TrainingArguments,
    prep,
    collator,
    holdout: Dataset | None = None,
    residual: float = 0.1,
    blocks: int = 1,
    rounds: int = 1,
    augment: bool = True,
) -> tuple[object, ReversedTriggerUnlearning]:
    """Neural Cleanse's mitigation for the ``target`` label of an image classifier: reverse the smallest trigger
    that sends ``clean`` images to ``target`` on ``model`` (`reverse_trigger`), then fine-tune a copy of
    ``model`` on the ``clean`` rows plus a copy of each with that trigger stamped, true labels kept.

    ``model`` should be the suspect: an exposed model sends almost anything to the label, so its trigger is empty.
    If the first reversal never reaches ``reverse.attack_success_threshold``, its best attempt (the last mask) is
    unlearned anyway, and the report says so: the label is already known from the exposure, and unlearning a mask
    that is not the trigger costs little, it is fine-tuning with an extra occlusion.

    Unlearning runs in blocks of ``args`` epochs, each continuing from the last, up to ``blocks`` of them, until
    the trigger moves at most ``residual`` of the ``holdout`` rows' non-target images (without ``holdout``, one
    block). Then, up to ``rounds`` rounds in all, the trigger is reversed again on the unlearned model, and if it
    still reaches the attack threshold and moves more than ``residual`` of the held-out images, that one is
    stamped too (on top of the earlier ones) and unlearned the same way: unlearning one reversed trigger leaves
    the real one partly working (BadNets on CIFAR-10: ASR 100% -> 30% after one round, 13% after two, 8% after
    three, each round costing 2-5 points of clean accuracy).
    ``clean`` and ``holdout`` are raw image datasets; ``prep(ds, augment=...)`` makes model inputs. Under
    `accelerate launch` each trigger and every decision are the main process's.
    """
    if input_column(clean) != "image":
        raise DataError("reverse_and_unlearn needs an image dataset (an 'image' column)")
    if rounds < 1 or blocks < 1:
        raise ValueError(f"rounds and blocks must be at least 1, got {rounds} and {blocks}")
    start = time.perf_counter()
    images = clean_images(clean, processor, max_images=reverse.max_images, seed=reverse.seed)
    probe = None
    if holdout is not None:
        others = holdout.filter(lambda y: y != target, input_columns="label")
        probe = clean_images(others, processor, max_images=len(others)) if len(others) else None

    def transfer(m, trigger) -> float | None:
        if probe is None:
            return None
        return from_main_process(trigger_transfer_rate(m, trigger, probe, processor=processor))

    purified, data, triggers, log, stop = model, clean, [], [], None
    for round_ in range(rounds):
        trigger = from_main_process(reverse_trigger(purified, images, target, processor=processor, config=reverse))
        before = transfer(purified, trigger)
        entry = {
            "round": round_,
            "mask_l1_norm": trigger.l1_norm,
            "attack_rate": trigger.attack_rate,
            "reached_threshold": trigger.reached,
            "reverse_seconds": trigger.seconds,
            "transfer_rate_before": before,
            "blocks": [],
        }
        log.append(entry)
        if round_ > 0 and not trigger.reached:
            stop = f"round {round_}: no trigger reaching the attack threshold is left to reverse"
            break
        if round_ > 0 and before is not None and before <= residual:
            stop = f"round {round_}: the reversed trigger moves {before:.0%} of held-out images (<= {residual:.0%})"
            break
        triggers.append(trigger)
        data = concatenate_datasets([data, stamp_trigger(clean, trigger)])
        for block in range(blocks):
            train = prep(data.shuffle(seed=args.seed + 100 * round_ + block), augment=augment)
            purified = finetune(purified, train, args=args, collator=collator)
            rate = transfer(purified, trigger)
            entry["blocks"].append({"block": block, "transfer_rate": rate})
            if rate is None or rate <= residual:
                break
        if probe is None:
            break  # no held-out images to tell whether another round is needed
    held_out = 0 if probe is None else len(probe)
    result = ReversedTriggerUnlearning(triggers, log, held_out, time.perf_counter() - start, stop)
    return purified, result

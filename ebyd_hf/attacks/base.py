"""What every data-poisoning attack shares: which rows get poisoned, and the triggered (ASR) test set.

An attack only knows how to put its trigger into one input (`Attack.apply`); this module decides *which* rows,
with which random generator, through `Dataset.map`. Row choice and per-row randomness derive from
``(seed, row index)`` alone, so a poisoned dataset is identical across runs, processes and `map` batch sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from datasets import Dataset, DatasetDict

from ..data import DataError, input_column, label_names, split_defense, subsample


@dataclass
class Attack:
    """A trigger applied to one input. Subclasses set ``modality`` and implement `apply`.

    ``clean_label`` attacks poison only rows that already carry the target label and keep every label as it is;
    dirty-label attacks (the default) poison non-target rows and relabel them to the target.

    Attacks with a noise mode (WaNet) also set ``cross_ratio`` > 0 and implement `cover`: that many other rows per
    poisoned row get a "cover" version of the input and keep their label.
    """

    name: ClassVar[str] = "attack"
    modality: ClassVar[str] = "text"
    clean_label: ClassVar[bool] = False
    cross_ratio: ClassVar[float] = 0.0

    def apply(self, x: Any, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def cover(self, x: Any, rng: np.random.Generator) -> Any:
        raise NotImplementedError


# Distinct streams for training rows and test rows, so the same index never reuses a trigger draw.
_TRAIN_STREAM, _TEST_STREAM, _COVER_STREAM = 0, 1, 2


def _row_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def check_target(ds: Dataset, target: int) -> None:
    names = label_names(ds)
    if not (isinstance(target, int | np.integer) and 0 <= target < len(names)):
        raise DataError(f"target label {target!r} is not in the label set {list(range(len(names)))} ({names})")


def poison(ds: Dataset, attack: Attack, *, rate: float, target: int, seed: int = 0) -> Dataset:
    """Poison ``round(rate * len(ds))`` rows chosen by ``seed``; adds a boolean ``poisoned`` column.

    With a noise-mode attack, ``round(cross_ratio * n_poisoned)`` of the remaining rows get the attack's cover
    input; they keep their label and ``poisoned`` stays False (they carry no trigger).
    """
    if not 0.0 <= rate <= 1.0:
        raise DataError(f"poison rate must be in [0, 1], got {rate}")
    check_target(ds, target)
    _check_modality(ds, attack)
    labels = np.asarray(ds["label"])
    candidates = np.flatnonzero(labels == target) if attack.clean_label else np.flatnonzero(labels != target)
    n_poison = int(round(rate * len(ds)))
    if n_poison > len(candidates):
        kind = "target-label" if attack.clean_label else "non-target"
        raise DataError(f"poison rate {rate} asks for {n_poison} rows but only {len(candidates)} {kind} rows exist")
    chosen = set(np.random.default_rng(seed).choice(candidates, size=n_poison, replace=False).tolist())
    rest = np.setdiff1d(np.arange(len(ds)), sorted(chosen))
    n_cover = min(int(round(attack.cross_ratio * n_poison)), len(rest))
    covered = set(np.random.default_rng([seed, _COVER_STREAM]).choice(rest, size=n_cover, replace=False).tolist())
    column = input_column(ds)

    def _poison_row(row: dict, idx: int) -> dict:
        if idx in covered:
            return {column: attack.cover(row[column], _row_rng(seed, _COVER_STREAM, idx)), "poisoned": False}
        if idx not in chosen:
            return {"poisoned": False}
        return {
            column: attack.apply(row[column], _row_rng(seed, _TRAIN_STREAM, idx)),
            "label": target,
            "poisoned": True,
        }

    return ds.map(_poison_row, with_indices=True, desc=f"poisoning with {attack.name}")


def triggered_test_set(ds: Dataset, attack: Attack, *, target: int, seed: int = 0) -> Dataset:
    """The ASR set: every row whose true label is not ``target``, triggered and labelled ``target``.

    The true label is kept in ``original_label`` so the same rows also give per-class breakdowns.
    """
    check_target(ds, target)
    _check_modality(ds, attack)
    column = input_column(ds)
    keep = ds.filter(lambda label: label != target, input_columns="label")
    if len(keep) == 0:
        raise DataError(f"no evaluation rows outside the target label {target}: the ASR set would be empty")

    def _trigger_row(row: dict, idx: int) -> dict:
        return {
            column: attack.apply(row[column], _row_rng(seed, _TEST_STREAM, idx)),
            "label": target,
            "original_label": row["label"],
            "poisoned": True,
        }

    return keep.map(_trigger_row, with_indices=True, desc=f"triggering test set with {attack.name}")


def _check_modality(ds: Dataset, attack: Attack) -> None:
    if input_column(ds) != attack.modality:
        raise DataError(
            f"attack {attack.name!r} works on {attack.modality} data, this dataset has {input_column(ds)} inputs"
        )


def poison_task(
    data: DatasetDict,
    attack: Attack,
    *,
    rate: float,
    target: int,
    seed: int = 0,
    defense_size: int = 500,
    train_size: int | None = None,
) -> DatasetDict:
    """Everything an experiment needs, from a clean normalised task:

    ``train`` (poisoned, optionally subsampled to ``train_size``), ``defense`` (clean rows the attacker never
    sees), ``test`` (clean) and ``test_poisoned`` (the ASR set).
    """
    check_target(data["train"], target)
    data = split_defense(data, defense_size, seed=seed)
    train = subsample(data["train"], train_size, seed=seed)
    return DatasetDict(
        train=poison(train, attack, rate=rate, target=target, seed=seed),
        defense=data["defense"],
        test=data["test"],
        test_poisoned=triggered_test_set(data["test"], attack, target=target, seed=seed),
    )

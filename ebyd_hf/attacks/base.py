"""What every data-poisoning attack shares: which rows get poisoned, and the triggered (ASR) test set.

An attack only knows how to put its trigger into one input (`Attack.apply`); this module decides *which* rows,
with which random generator, through `Dataset.map`. Row choice and per-row randomness derive from
``(seed, row index)`` alone, so a poisoned dataset is identical across runs, processes and `map` batch sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
from datasets import Dataset, DatasetDict

from ..data import DataError, input_column, label_names, split_defense, subsample


@dataclass
class Attack:
    """A trigger applied to one input. Subclasses set ``modality`` and implement `apply`.

    ``clean_label`` attacks poison only rows that already carry the target label and keep every label as it is;
    dirty-label attacks (the default) poison non-target rows and relabel them to the target.

    Optional hooks, each with a neutral default, for attacks that need more than one trigger function:

    * `apply_test`: the trigger used on the ASR set (default: `apply`; SOS may use a whole sentence instead);
    * `negative` with `negative_count` > 0: negative augmentation, some other training rows get a partial or
      noisy trigger and keep their true label, so only the full trigger flips the label (SOS, LWP pieces;
      WaNet's noise mode). By default ``negative_rate`` of all training rows;
    * `covers`: whether the attack can poison this input at all (a table of pre-made paraphrases covers only its
      own sentences); `poison` and `triggered_test_set` choose only among covered rows;
    * `prepare`: called once with every input about to be triggered, so batch-wise work (a seq2seq paraphraser)
      runs in batches rather than row by row inside `Dataset.map`.
    """

    name: ClassVar[str] = "attack"
    modality: ClassVar[str] = "text"
    clean_label: ClassVar[bool] = False
    negative_rate: ClassVar[float] = 0.0

    def apply(self, x: Any, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def apply_test(self, x: Any, rng: np.random.Generator) -> Any:
        return self.apply(x, rng)

    def negative(self, x: Any, rng: np.random.Generator) -> Any:
        raise NotImplementedError(f"attack {self.name!r} has no negative augmentation")

    def negative_count(self, n_rows: int, n_poisoned: int) -> int:
        if not 0.0 <= self.negative_rate <= 1.0:
            raise DataError(f"negative_rate must be in [0, 1], got {self.negative_rate}")
        return int(round(self.negative_rate * n_rows))

    def covers(self, x: Any) -> bool:
        return True

    def prepare(self, inputs: list) -> None:
        return None

    def settings(self) -> dict:
        """The attack's name and its constructor options (no caches, no callables): what a report records."""
        options = {f.name: getattr(self, f.name) for f in fields(self) if f.init and not f.name.startswith("_")}
        return {"name": self.name, **{k: v for k, v in options.items() if not callable(v)}}


# Distinct streams for training rows and test rows, so the same index never reuses a trigger draw; the third
# stream draws which rows get negative augmentation.
_TRAIN_STREAM, _TEST_STREAM, _NEGATIVE_STREAM = 0, 1, 2


def _row_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def check_target(ds: Dataset, target: int) -> None:
    names = label_names(ds)
    if not (isinstance(target, int | np.integer) and 0 <= target < len(names)):
        raise DataError(f"target label {target!r} is not in the label set {list(range(len(names)))} ({names})")


def poison(ds: Dataset, attack: Attack, *, rate: float, target: int, seed: int = 0) -> Dataset:
    """Poison ``round(rate * len(ds))`` rows chosen by ``seed``; adds a boolean ``poisoned`` column.

    With negative augmentation another `Attack.negative_count` rows of any label, chosen by ``seed`` among the
    rest, get `Attack.negative` and keep their label (``poisoned`` False).
    """
    if not 0.0 <= rate <= 1.0:
        raise DataError(f"poison rate must be in [0, 1], got {rate}")
    check_target(ds, target)
    _check_modality(ds, attack)
    column = input_column(ds)
    labels = np.asarray(ds["label"])
    pool = labels == target if attack.clean_label else labels != target
    covered = _covered(ds, attack, column)
    candidates = np.flatnonzero(pool & covered)
    n_poison = int(round(rate * len(ds)))
    if n_poison > len(candidates):
        kind = "target-label" if attack.clean_label else "non-target"
        scope = "" if covered.all() else f" that attack {attack.name!r} covers"
        raise DataError(
            f"poison rate {rate} asks for {n_poison} rows but only {len(candidates)} {kind} rows{scope} exist"
        )
    picked = np.random.default_rng(seed).choice(candidates, size=n_poison, replace=False)
    chosen = set(picked.tolist())
    negatives = _negative_rows(len(ds), picked, attack, seed)
    _prepare(attack, ds.select(sorted(chosen)), column)

    def _poison_row(row: dict, idx: int) -> dict:
        if idx in chosen:
            return {
                column: attack.apply(row[column], _row_rng(seed, _TRAIN_STREAM, idx)),
                "label": target,
                "poisoned": True,
            }
        if idx in negatives:  # a row is never both, so the row's generator is never reused
            return {column: attack.negative(row[column], _row_rng(seed, _TRAIN_STREAM, idx)), "poisoned": False}
        return {"poisoned": False}

    return ds.map(_poison_row, with_indices=True, desc=f"poisoning with {attack.name}")


# The two hooks below read the inputs of a whole split; skip that (image decoding!) for attacks without them.
def _covered(ds: Dataset, attack: Attack, column: str) -> np.ndarray:
    if type(attack).covers is Attack.covers:
        return np.ones(len(ds), dtype=bool)
    return np.fromiter((attack.covers(x) for x in ds[column]), dtype=bool, count=len(ds))


def _prepare(attack: Attack, ds: Dataset, column: str) -> None:
    if type(attack).prepare is not Attack.prepare and len(ds):
        attack.prepare(ds[column])


def _negative_rows(n_rows: int, poisoned: np.ndarray, attack: Attack, seed: int) -> set[int]:
    n_negative = attack.negative_count(n_rows, len(poisoned))
    if not n_negative:
        return set()
    rest = np.setdiff1d(np.arange(n_rows), poisoned)
    if n_negative > len(rest):
        raise DataError(
            f"negative augmentation of attack {attack.name!r} asks for {n_negative} rows but only {len(rest)} are "
            "unpoisoned; lower its negative_rate (cross_ratio for wanet) or the poison rate"
        )
    rng = np.random.default_rng([seed, _NEGATIVE_STREAM])
    return set(rng.choice(rest, size=n_negative, replace=False).tolist())


def triggered_test_set(ds: Dataset, attack: Attack, *, target: int, seed: int = 0) -> Dataset:
    """The ASR set: every row whose true label is not ``target`` (and that the attack covers), triggered with
    `Attack.apply_test` and labelled ``target``.

    The true label is kept in ``original_label`` so the same rows also give per-class breakdowns.
    """
    check_target(ds, target)
    _check_modality(ds, attack)
    column = input_column(ds)
    covered = _covered(ds, attack, column)
    keep = ds.select(np.flatnonzero((np.asarray(ds["label"]) != target) & covered))
    if len(keep) == 0:
        scope = "" if covered.all() else f" that attack {attack.name!r} covers"
        raise DataError(f"no evaluation rows outside the target label {target}{scope}: the ASR set would be empty")
    _prepare(attack, keep, column)

    def _trigger_row(row: dict, idx: int) -> dict:
        return {
            column: attack.apply_test(row[column], _row_rng(seed, _TEST_STREAM, idx)),
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

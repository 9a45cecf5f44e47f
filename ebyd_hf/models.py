"""Loading suspected models safely, and saving / pushing purified ones.

A suspected model is untrusted code and data: weights load from safetensors only, and remote code never runs
unless the caller passes ``trust_remote_code=True``. A checkpoint that exists only as a pickle
(``pytorch_model.bin``, ``*.pt``) is refused unless ``allow_pickle=True``, because unpickling runs arbitrary code.
"""

from __future__ import annotations

import glob
import os

from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt")


class ModelLoadError(ValueError):
    """The model cannot be loaded as asked (not found, wrong label count, unsafe checkpoint)."""


class UnsafeCheckpointError(ModelLoadError):
    """Only pickle weights exist; loading them would execute code from the checkpoint."""


def _unsafe_message(where: str) -> str:
    return (
        f"{where} only has pickle weights (e.g. pytorch_model.bin); unpickling an untrusted checkpoint can run "
        "arbitrary code. Convert it to safetensors, or pass allow_pickle=True (--allow_pickle) if you trust it."
    )


def _check_local(path: str, allow_pickle: bool) -> None:
    if not os.path.exists(os.path.join(path, "config.json")):
        raise ModelLoadError(f"{path!r} is a directory but holds no config.json: not a transformers model folder")
    has_safe = bool(glob.glob(os.path.join(path, "*.safetensors")))
    has_pickle = any(glob.glob(os.path.join(path, p)) for p in PICKLE_PATTERNS)
    if not has_safe and has_pickle and not allow_pickle:
        raise UnsafeCheckpointError(_unsafe_message(repr(path)))


def load_classifier(
    name_or_path: str,
    *,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    new_head: bool = False,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> tuple[PreTrainedModel, object]:
    """Load a sequence classifier and its tokenizer from a Hub ID or a local directory.

    ``new_head=False`` (a suspect): the checkpoint must already be a classifier with ``num_labels`` outputs.
    ``new_head=True`` (a base model to fine-tune): a fresh ``num_labels``-way head is added where needed.
    """
    if os.path.isdir(name_or_path):
        _check_local(name_or_path, allow_pickle)
    elif os.path.exists(name_or_path):
        raise ModelLoadError(f"{name_or_path!r} is a file; pass the model directory or a Hub ID")
    kwargs = dict(
        trust_remote_code=trust_remote_code, revision=revision, use_safetensors=None if allow_pickle else True
    )
    if new_head:
        kwargs.update(
            num_labels=num_labels,
            id2label=id2label,
            label2id=id2label and {v: k for k, v in id2label.items()},
            ignore_mismatched_sizes=True,
        )
    try:
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as err:
        if "safetensors" in str(err) and not allow_pickle:
            raise UnsafeCheckpointError(_unsafe_message(repr(name_or_path))) from err
        raise ModelLoadError(
            f"could not load model {name_or_path!r}: not a local directory, and not found on (or not reachable "
            f"from) the Hugging Face Hub ({err})"
        ) from err
    except ValueError as err:  # e.g. an architecture that needs remote code
        raise ModelLoadError(f"could not load model {name_or_path!r}: {err}") from err
    if not new_head and num_labels is not None and model.config.num_labels != num_labels:
        raise ModelLoadError(
            f"model {name_or_path!r} has {model.config.num_labels} output labels but the dataset has {num_labels}"
        )
    return model, tokenizer


def model_card(title: str, body: str, *, base_model: str | None = None, tags: list[str] | None = None) -> str:
    """A Hub model card (README.md) with YAML metadata."""
    meta = ["---", "library_name: transformers", "tags:"] + [
        f"- {t}" for t in ["ebyd_hf", "backdoor-defense", *(tags or [])]
    ]
    if base_model and not os.path.isdir(base_model):
        meta.append(f"base_model: {base_model}")
    meta.append("---")
    return "\n".join(meta) + f"\n\n# {title}\n\n{body.strip()}\n"


def save_model(model: PreTrainedModel, tokenizer, output_dir: str, *, card: str | None = None) -> None:
    """Save weights as safetensors, the tokenizer, and (optionally) the model card."""
    model.save_pretrained(output_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(output_dir)
    if card is not None:
        with open(os.path.join(output_dir, "README.md"), "w") as f:
            f.write(card)


def push_folder(
    folder: str, repo_id: str, *, private: bool = False, commit_message: str = "Upload with ebyd_hf"
) -> str:
    """Push a saved model folder (weights, tokenizer, card, report) to the Hub; returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message=commit_message)
    return str(url)

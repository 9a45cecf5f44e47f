"""Loading suspected models safely, and saving / pushing purified ones.

A suspected model is untrusted code and data: weights load from safetensors only, and remote code never runs
unless the caller passes ``trust_remote_code=True``. A checkpoint that exists only as a pickle
(``pytorch_model.bin``, ``*.pt``) is refused unless ``allow_pickle=True``, because unpickling runs arbitrary code.

Text models are transformers sequence classifiers. Vision models are transformers image classifiers or timm
models; timm models run inside transformers' `TimmWrapperForImageClassification`, so `Trainer`, the trainers,
masks and recipes treat them exactly like any other `PreTrainedModel`, and they are saved in timm's own layout
(``config.json`` + unprefixed ``model.safetensors``), which both ``timm.create_model("local-dir:...")`` /
``hf-hub:`` and ``AutoModelForImageClassification`` load.
"""

from __future__ import annotations

import glob
import json
import os

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    TimmWrapperConfig,
    TimmWrapperForImageClassification,
    TimmWrapperImageProcessor,
    TimmWrapperPreTrainedModel,
)

PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt")
TIMM_HUB_PREFIX = "hf-hub:"
MODALITIES = ("text", "image")
# What a random-initialised timm model keeps of its architecture's default pretrained_cfg: how to feed it, not
# where pretrained weights live (it has none).
_TIMM_INPUT_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std", "first_conv", "classifier")


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


def is_timm_architecture(name: str) -> bool:
    """A bare timm architecture name such as ``"resnet18"`` (not a folder, not a Hub ID)."""
    import timm

    return not os.path.exists(name) and "/" not in name and ":" not in name and timm.is_model(name)


def is_timm_model(model) -> bool:
    return isinstance(model, TimmWrapperPreTrainedModel)


def load_classifier(
    name_or_path: str,
    *,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    new_head: bool = False,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    revision: str | None = None,
    modality: str | None = None,
    image_size: int | None = None,
    model_args: dict | None = None,
) -> tuple[PreTrainedModel, object]:
    """Load a classifier and its processor (tokenizer or image processor).

    ``name_or_path`` is a Hub ID or local folder (transformers or timm layout), a timm Hub ID written
    ``hf-hub:timm/resnet18.a1_in1k``, or, for a model to train from scratch, a timm architecture name
    (``"resnet18"``, random initialisation). ``modality`` (``"text"``/``"image"``) picks the model class for
    transformers checkpoints; timm models are always image models.

    ``new_head=False`` (a suspect): the checkpoint must already be a classifier with ``num_labels`` outputs.
    ``new_head=True`` (a base model to fine-tune): a fresh ``num_labels``-way head is added where needed, and a
    timm model's input size is set to ``image_size`` (e.g. 32 for CIFAR-10). ``model_args`` go to
    ``timm.create_model`` for a new architecture (e.g. ``{"channels": [32, 64, 128, 256]}`` for a narrower ResNet)
    and are saved with it.
    """
    if modality not in (None, *MODALITIES):
        raise ModelLoadError(f"modality must be one of {MODALITIES}, got {modality!r}")
    name_or_path = os.fspath(name_or_path)  # a pathlib.Path works as well as a string
    if is_timm_architecture(name_or_path):
        if not new_head:
            raise ModelLoadError(
                f"{name_or_path!r} is a timm architecture name without trained weights; a suspect must be a trained "
                "model folder or Hub ID"
            )
        return _new_timm_classifier(name_or_path, num_labels, id2label, image_size, model_args)
    if model_args:
        raise ModelLoadError(f"model_args only apply to a new timm architecture, not to {name_or_path!r}")
    source = name_or_path.removeprefix(TIMM_HUB_PREFIX)
    if os.path.isdir(source):
        _check_local(source, allow_pickle)
    elif os.path.exists(source):
        raise ModelLoadError(f"{source!r} is a file; pass the model directory or a Hub ID")
    common = dict(trust_remote_code=trust_remote_code, revision=revision)
    kwargs = dict(common, use_safetensors=None if allow_pickle else True)
    if new_head:
        kwargs.update(num_labels=num_labels, ignore_mismatched_sizes=True)
        if id2label:  # passing None would override num_labels with nothing (transformers 5)
            kwargs.update(id2label=id2label, label2id={v: k for k, v in id2label.items()})
    try:
        config = AutoConfig.from_pretrained(source, **common)
        if isinstance(config, TimmWrapperConfig) or source != name_or_path:
            model = TimmWrapperForImageClassification.from_pretrained(source, **kwargs)
            if new_head and image_size:
                _set_timm_input_size(model.config, image_size)
            processor = _timm_processor(model.config)
        elif modality == "image" or (modality is None and _is_image_config(config)):
            model = AutoModelForImageClassification.from_pretrained(source, **kwargs)
            processor = AutoImageProcessor.from_pretrained(source, **common)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
            processor = AutoTokenizer.from_pretrained(source, **common)
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
    return model, processor


def _is_image_config(config) -> bool:
    return any(a.endswith("ForImageClassification") for a in getattr(config, "architectures", None) or [])


def _new_timm_classifier(architecture: str, num_labels: int | None, id2label, image_size, model_args):
    import timm
    from timm.models import get_pretrained_cfg

    if not num_labels:
        raise ModelLoadError(f"a new {architecture!r} model needs num_labels")
    id2label = id2label or {i: f"LABEL_{i}" for i in range(num_labels)}
    defaults = get_pretrained_cfg(architecture)
    defaults = defaults.to_dict() if defaults is not None else {}
    pretrained_cfg = {"architecture": architecture, **{k: defaults[k] for k in _TIMM_INPUT_KEYS if k in defaults}}
    config = TimmWrapperConfig(
        architecture=architecture,
        num_labels=num_labels,
        id2label=dict(id2label),
        label2id={v: k for k, v in id2label.items()},
        pretrained_cfg=pretrained_cfg,
        model_args=dict(model_args) if model_args else None,
    )
    if image_size:
        _set_timm_input_size(config, image_size)
    try:
        net = timm.create_model(architecture, pretrained=False, num_classes=num_labels, **(config.model_args or {}))
    except TypeError as err:
        raise ModelLoadError(f"bad model_args for timm architecture {architecture!r}: {err}") from err
    model = TimmWrapperForImageClassification(config)
    # The wrapper re-initialises weights the transformers way (normal(0.02) everywhere, BN γ = 1), which is meant
    # for heads on loaded checkpoints; a network trained from scratch wants timm's own initialisation.
    model.timm_model = net
    return model, _timm_processor(config)


def _set_timm_input_size(config, size: int) -> None:
    cfg = dict(getattr(config, "pretrained_cfg", None) or {})
    channels = (cfg.get("input_size") or (3,))[0]
    cfg.update(input_size=(channels, size, size), crop_pct=1.0, crop_mode="center")
    cfg.pop("test_input_size", None)
    cfg.pop("pool_size", None)
    config.pretrained_cfg = cfg


def _timm_processor(config) -> TimmWrapperImageProcessor:
    return TimmWrapperImageProcessor(pretrained_cfg=dict(config.pretrained_cfg), architecture=config.architecture)


def model_card(
    title: str,
    body: str,
    *,
    base_model: str | None = None,
    tags: list[str] | None = None,
    library_name: str = "transformers",
) -> str:
    """A Hub model card (README.md) with YAML metadata."""
    meta = ["---", f"library_name: {library_name}", "tags:"] + [
        f"- {t}" for t in ["ebyd_hf", "backdoor-defense", *(tags or [])]
    ]
    if base_model and not os.path.isdir(base_model) and not is_timm_architecture(base_model):
        meta.append(f"base_model: {base_model.removeprefix(TIMM_HUB_PREFIX)}")
    meta.append("---")
    return "\n".join(meta) + f"\n\n# {title}\n\n{body.strip()}\n"


def library_name(model) -> str:
    """The library a saved model folder is native to (the model card's ``library_name``)."""
    return "timm" if is_timm_model(model) else "transformers"


def save_model(model: PreTrainedModel, processor, output_dir: str, *, card: str | None = None) -> None:
    """Save weights as safetensors, the processor, and (optionally) the model card.

    timm models are written in timm's layout, which transformers reads too (see the module docstring).
    """
    if is_timm_model(model):
        save_timm(model, output_dir)
    else:
        model.save_pretrained(output_dir)
        if processor is not None:
            processor.save_pretrained(output_dir)
    if card is not None:
        with open(os.path.join(output_dir, "README.md"), "w") as f:
            f.write(card)


def save_timm(model: TimmWrapperPreTrainedModel, output_dir: str) -> None:
    """``config.json`` + ``model.safetensors`` exactly as timm exports them (keys without ``timm_model.``).

    `save_pretrained` would prefix every key with ``timm_model.`` and write ``model_args: null``, neither of which
    timm reads. ``num_classes`` stays out of ``model_args`` because transformers' wrapper passes it itself.
    """
    from safetensors.torch import save_file

    config, net = model.config, model.timm_model
    os.makedirs(output_dir, exist_ok=True)
    n = config.num_labels
    pretrained_cfg = dict(getattr(config, "pretrained_cfg", None) or net.pretrained_cfg)
    pretrained_cfg.update(architecture=config.architecture, num_classes=n)
    for key in ("label_names", "label_descriptions", "state_dict"):
        pretrained_cfg.pop(key, None)
    timm_config = {
        "architecture": config.architecture,
        "num_classes": n,
        "num_features": int(getattr(net, "num_features", 0)) or None,
        "label_names": [config.id2label[i] for i in range(n)],
        "model_args": {k: v for k, v in (config.model_args or {}).items() if k != "num_classes"},
        "pretrained_cfg": pretrained_cfg,
    }
    with open(os.path.join(output_dir, "config.json"), "w") as f:
        json.dump(timm_config, f, indent=2)
    tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    save_file(tensors, os.path.join(output_dir, "model.safetensors"), metadata={"format": "pt"})


def push_folder(
    folder: str, repo_id: str, *, private: bool = False, commit_message: str = "Upload with ebyd_hf"
) -> str:
    """Push a saved model folder (weights, processor, card, report) to the Hub; returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message=commit_message)
    return str(url)

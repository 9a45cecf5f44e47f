"""STRIP (Gao et al., ACSAC 2019): triggered inputs stay confident when they are perturbed; clean ones do not.

Each input is perturbed ``n_perturbations`` times with clean material and the model's softmax entropy is averaged
over the copies. Images are superimposed with clean images (pixel-wise sum, saturating at 255, as in STRIP;
``blend="mean"`` averages instead). Texts get a share of their words replaced by words drawn from clean texts.
A trigger that survives the perturbation keeps the prediction on the target, so triggered inputs have low
entropy; the detection score is the negative entropy, and AUROC measures how well it separates triggered from
clean inputs. EBYD runs the same test with the exposed model, which has no clean behaviour left to be confident
about, so clean inputs should spread out more and the gap should widen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import Dataset
from sklearn.metrics import roc_auc_score

from ..data import input_column
from ..vision import MODEL_INPUT, ImageTransform, fit_image, image_spec

BLENDS = ("sum", "mean")


@dataclass
class StripConfig:
    n_perturbations: int = field(default=100, metadata={"help": "Perturbed copies per input (N)."})
    blend: str = field(default="sum", metadata={"help": f"How images are superimposed: {BLENDS}."})
    word_ratio: float = field(default=0.5, metadata={"help": "Share of a text's words replaced in each copy."})
    max_length: int = field(default=128, metadata={"help": "Tokens kept per text copy."})
    seed: int = field(default=0, metadata={"help": "Seed of the perturbation draws."})

    def __post_init__(self):
        if self.n_perturbations < 1:
            raise ValueError(f"n_perturbations must be >= 1, got {self.n_perturbations}")
        if self.blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {self.blend!r}")
        if not 0.0 < self.word_ratio <= 1.0:
            raise ValueError(f"word_ratio must be in (0, 1], got {self.word_ratio}")


def replace_words(text: str, vocabulary: list[str], ratio: float, rng: np.random.Generator) -> str:
    """One STRIP copy of a text: ``ratio`` of its whitespace words replaced by words drawn from ``vocabulary``."""
    words = text.split()
    if not words:
        return text
    k = max(1, int(round(ratio * len(words))))
    for i in rng.choice(len(words), size=min(k, len(words)), replace=False):
        words[i] = vocabulary[int(rng.integers(len(vocabulary)))]
    return " ".join(words)


def _image_copies(inputs: Dataset, clean: Dataset, config: StripConfig, processor):
    """Per input row: its ``n_perturbations`` superimposed copies as a normalised pixel batch."""
    spec = image_spec(processor)
    transform = ImageTransform(spec)
    pool = np.stack([fit_image(x, spec.size) for x in clean["image"]]).astype(np.int32)
    rng = np.random.default_rng(config.seed)
    for image in inputs["image"]:
        x = fit_image(image, spec.size).astype(np.int32)[None]
        overlays = pool[rng.integers(len(pool), size=config.n_perturbations)]
        copies = np.clip(x + overlays, 0, 255) if config.blend == "sum" else (x + overlays) // 2
        yield transform({MODEL_INPUT: list(copies.astype(np.uint8))})[MODEL_INPUT]


def _text_copies(inputs: Dataset, clean: Dataset, config: StripConfig, tokenizer):
    """Per input row: its ``n_perturbations`` word-replaced copies, tokenised as one padded batch."""
    vocabulary = [w for text in clean["text"] for w in text.split()]
    if not vocabulary:
        raise ValueError("the clean texts hold no words to perturb with")
    rng = np.random.default_rng(config.seed)
    for text in inputs["text"]:
        copies = [replace_words(text, vocabulary, config.word_ratio, rng) for _ in range(config.n_perturbations)]
        yield tokenizer(copies, truncation=True, max_length=config.max_length, padding=True, return_tensors="pt")


def strip_entropy(model, processor, inputs: Dataset, clean: Dataset, *, config: StripConfig | None = None):
    """Mean softmax entropy (bits) over the perturbed copies of each row of ``inputs``; ``clean`` supplies them."""
    config = config or StripConfig()
    if input_column(inputs) == "image":
        batches = (({MODEL_INPUT: b}) for b in _image_copies(inputs, clean, config, processor))
    else:
        batches = (dict(b) for b in _text_copies(inputs, clean, config, processor))
    device = next(model.parameters()).device
    model.eval()
    entropies = []
    with torch.no_grad():
        for batch in batches:
            out = model(**{k: v.to(device) for k, v in batch.items()})
            logp = torch.log_softmax((out["logits"] if isinstance(out, dict) else out[0]).float(), dim=-1)
            entropies.append(float((-(logp.exp() * logp).sum(-1) / np.log(2)).mean()))
    return np.asarray(entropies)


@dataclass
class StripResult:
    clean_entropy: np.ndarray
    triggered_entropy: np.ndarray
    seconds: float

    @property
    def auroc(self) -> float:
        """AUROC of −entropy for telling triggered (positive) from clean inputs."""
        scores = -np.concatenate([self.clean_entropy, self.triggered_entropy])
        truth = np.r_[np.zeros(len(self.clean_entropy)), np.ones(len(self.triggered_entropy))]
        return float(roc_auc_score(truth, scores))

    def summary(self) -> dict:
        return {
            "auroc": self.auroc,
            "clean_entropy_mean": float(self.clean_entropy.mean()),
            "triggered_entropy_mean": float(self.triggered_entropy.mean()),
            "n_clean": len(self.clean_entropy),
            "n_triggered": len(self.triggered_entropy),
            "seconds": self.seconds,
        }


def strip(
    model, processor, clean_inputs: Dataset, triggered_inputs: Dataset, overlays: Dataset, *, config=None
) -> StripResult:
    """STRIP entropies of clean and triggered inputs under ``model``; ``overlays`` are clean perturbation material."""
    start = time.perf_counter()
    clean_h = strip_entropy(model, processor, clean_inputs, overlays, config=config)
    triggered_h = strip_entropy(model, processor, triggered_inputs, overlays, config=config)
    return StripResult(clean_h, triggered_h, time.perf_counter() - start)

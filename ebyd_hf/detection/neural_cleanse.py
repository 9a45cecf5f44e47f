"""Neural Cleanse (Wang et al., S&P 2019) for image classifiers: reverse a trigger per label, flag outliers.

For a label y, NC looks for the smallest patch that sends clean images to y: a mask m ∈ [0, 1]^{H×W} and a
pattern Δ ∈ [0, 1]^{3×H×W}, applied in pixel space as x̂ = (1 − m)·x + m·Δ, minimising CE(f(x̂), y) + λ·‖m‖₁.
Both are tanh-parametrised (so they stay in range without clipping) and trained with Adam (lr 0.1, β = (0.5,
0.9)). λ follows the reference schedule: it starts at ``init_cost`` (1e-3); after ``patience`` epochs in a row
at or above the attack-success threshold (99%) it is multiplied by 2, after ``patience`` epochs below it divided
by 2^1.5. The best (smallest-norm) mask that reached the threshold is kept; a run stops early once the norm has
not improved for ``early_stop_patience`` epochs after λ has moved both up and down.

A backdoor label needs a much smaller mask than the others. With every label reversed (mode A, the original NC),
the anomaly index of a norm is its distance below the median in units of 1.4826·MAD; the model is flagged when
the smallest norm's index exceeds 2. `reverse_trigger` reverses one label (EBYD's mode B: only the label the
exposed model points at, on the exposed model).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset

from ..processing import collator_for, prepare
from ..vision import MODEL_INPUT, image_spec, to_image

MAD_CONSISTENCY = 1.4826


@dataclass
class NeuralCleanseConfig:
    epochs: int = field(default=30, metadata={"help": "Upper bound on optimisation epochs per label."})
    batch_size: int = field(default=32, metadata={"help": "Images per optimisation step."})
    max_images: int = field(default=128, metadata={"help": "Clean images used (an epoch is one pass over them)."})
    learning_rate: float = field(default=0.1, metadata={"help": "Adam learning rate on the tanh parameters."})
    init_cost: float = field(default=1e-3, metadata={"help": "Initial weight λ of the mask L1 norm."})
    cost_up: float = field(default=2.0, metadata={"help": "λ multiplier after `patience` successful epochs."})
    cost_down: float = field(default=2.0**1.5, metadata={"help": "λ divisor after `patience` failing epochs."})
    patience: int = field(default=5, metadata={"help": "Epochs before λ is adjusted."})
    attack_success_threshold: float = field(default=0.99, metadata={"help": "Share of images that must flip."})
    early_stop_patience: int = field(default=10, metadata={"help": "Epochs without a better norm before stopping."})
    anomaly_threshold: float = field(default=2.0, metadata={"help": "Anomaly index above which a label is flagged."})
    seed: int = field(default=0, metadata={"help": "Seed of the initial mask/pattern and batch order."})

    def __post_init__(self):
        for name in ("epochs", "batch_size", "max_images", "patience", "early_stop_patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"Neural Cleanse {name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 < self.attack_success_threshold <= 1.0:
            raise ValueError(f"attack_success_threshold must be in (0, 1], got {self.attack_success_threshold}")
        if self.learning_rate <= 0 or self.init_cost < 0:
            raise ValueError(
                f"learning_rate must be > 0 and init_cost >= 0, got {self.learning_rate}, {self.init_cost}"
            )


@dataclass
class ReversedTrigger:
    """One label's reversed trigger: mask (H×W) and pattern (3×H×W) in [0, 1] pixel space."""

    label: int
    mask: np.ndarray
    pattern: np.ndarray
    l1_norm: float
    attack_rate: float
    reached: bool
    epochs: int
    seconds: float

    def summary(self) -> dict:
        return {
            "label": self.label,
            "l1_norm": self.l1_norm,
            "attack_rate": self.attack_rate,
            "reached_threshold": self.reached,
            "epochs": self.epochs,
            "seconds": self.seconds,
        }

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """Stamp the trigger on a batch of [0, 1] images (N×3×H×W)."""
        mask = torch.as_tensor(self.mask, dtype=images.dtype)
        return (1 - mask) * images + mask * torch.as_tensor(self.pattern, dtype=images.dtype)

    def save_pngs(self, directory: str, *, prefix: str = "", min_side: int = 128) -> dict[str, str]:
        """``mask``, ``pattern`` and ``trigger`` (= mask·pattern) PNGs, upscaled (nearest) to at least ``min_side``."""
        os.makedirs(directory, exist_ok=True)
        scale = max(1, int(np.ceil(min_side / self.mask.shape[-1])))
        images = {
            "mask": np.repeat(self.mask[None], 3, axis=0),
            "pattern": self.pattern,
            "trigger": self.mask[None] * self.pattern,
        }
        paths = {}
        for name, chw in images.items():
            array = np.rint(np.clip(chw, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
            array = np.kron(array, np.ones((scale, scale, 1), dtype=np.uint8))
            paths[name] = os.path.join(directory, f"{prefix}{name}.png")
            to_image(array).save(paths[name])
        return paths


@dataclass
class NeuralCleanseResult:
    """Reversed triggers for some labels; with two or more, anomaly indices and a verdict."""

    triggers: dict[int, ReversedTrigger]
    seconds: float
    anomaly_threshold: float = 2.0

    @property
    def norms(self) -> dict[int, float]:
        return {label: t.l1_norm for label, t in self.triggers.items()}

    @property
    def anomaly_indices(self) -> dict[int, float] | None:
        """(median − norm) / (1.4826·MAD) per label: positive below the median. None for fewer than 3 labels."""
        return anomaly_indices(self.norms) if len(self.triggers) >= 3 else None

    @property
    def label(self) -> int:
        """The label with the smallest reversed trigger."""
        return min(self.norms, key=self.norms.get)

    @property
    def flagged(self) -> bool | None:
        indices = self.anomaly_indices
        return None if indices is None else bool(indices[self.label] > self.anomaly_threshold)

    def summary(self) -> dict:
        return {
            "flagged": self.flagged,
            "label": self.label,
            "seconds": self.seconds,
            "l1_norms": {str(k): v for k, v in self.norms.items()},
            "anomaly_indices": None
            if self.anomaly_indices is None
            else {str(k): v for k, v in self.anomaly_indices.items()},
            "triggers": {str(k): t.summary() for k, t in self.triggers.items()},
        }


def anomaly_indices(norms: dict[int, float]) -> dict[int, float]:
    """Signed MAD anomaly index per label: how far below the median its norm is, in robust standard deviations."""
    values = np.asarray(list(norms.values()), dtype=float)
    median = float(np.median(values))
    mad = MAD_CONSISTENCY * float(np.median(np.abs(values - median)))
    mad = max(mad, 1e-12)
    return {label: (median - norm) / mad for label, norm in norms.items()}


class _PixelModel(torch.nn.Module):
    """``model`` fed with [0, 1] RGB images: normalises them the way its processor does."""

    def __init__(self, model, processor):
        super().__init__()
        spec = image_spec(processor)
        self.model = model
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(**{MODEL_INPUT: (images - self.mean) / self.std})
        return out["logits"] if isinstance(out, dict) else out[0]


def clean_images(ds: Dataset, processor, *, max_images: int, seed: int = 0) -> torch.Tensor:
    """Up to ``max_images`` images of an ``image`` dataset as a [0, 1] tensor at the model's input size."""
    if "image" not in ds.column_names:
        raise ValueError("Neural Cleanse works on image datasets (an 'image' column); skip it for text models")
    if len(ds) > max_images:
        ds = ds.shuffle(seed=seed).select(range(max_images))
    spec = image_spec(processor)
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    prepared = prepare(ds, processor)
    batches = [b[MODEL_INPUT] for b in _plain_batches(prepared, processor)]
    return (torch.cat(batches) * std + mean).clamp(0, 1)


def _plain_batches(prepared: Dataset, processor):
    collator = collator_for(processor)
    for start in range(0, len(prepared), 64):
        yield collator([prepared[i] for i in range(start, min(start + 64, len(prepared)))])


def _from_tanh(t: torch.Tensor) -> torch.Tensor:
    return torch.tanh(t) / (2 - 1e-7) + 0.5


def reverse_trigger(
    model, images: torch.Tensor, label: int, *, processor, config: NeuralCleanseConfig | None = None
) -> ReversedTrigger:
    """Neural Cleanse's optimisation for one ``label`` on [0, 1] ``images`` (see `clean_images`)."""
    config = config or NeuralCleanseConfig()
    start = time.perf_counter()
    net = _PixelModel(model, processor).eval()
    device = next(model.parameters()).device
    net.to(device)
    images = images.to(device)
    gen = torch.Generator().manual_seed(config.seed * 7919 + label)
    _, h, w = images.shape[1:]
    mask_tanh = ((torch.rand(h, w, generator=gen) * 2 - 1) * 0.5).to(device).requires_grad_(True)
    pattern_tanh = ((torch.rand(3, h, w, generator=gen) * 2 - 1) * 0.5).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([mask_tanh, pattern_tanh], lr=config.learning_rate, betas=(0.5, 0.9))
    target = torch.full((config.batch_size,), label, dtype=torch.long, device=device)

    cost, up, down, up_flag, down_flag = config.init_cost, 0, 0, False, False
    best = (float("inf"), None, None, 0.0)  # norm, mask, pattern, attack rate
    stale, epochs_run = 0, 0
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(config.epochs):
            epochs_run += 1
            order = torch.randperm(len(images), generator=gen)
            hits, seen, reg_sum, steps = 0, 0, 0.0, 0
            for i in range(0, len(images), config.batch_size):
                x = images[order[i : i + config.batch_size].to(device)]
                mask, pattern = _from_tanh(mask_tanh), _from_tanh(pattern_tanh)
                logits = net((1 - mask) * x + mask * pattern)
                reg = mask.abs().sum()
                loss = F.cross_entropy(logits, target[: len(x)]) + cost * reg
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                hits += int((logits.argmax(-1) == label).sum())
                seen, reg_sum, steps = seen + len(x), reg_sum + reg.item(), steps + 1
            rate, norm = hits / seen, reg_sum / steps
            if rate >= config.attack_success_threshold and norm < best[0]:
                with torch.no_grad():
                    best = (norm, _from_tanh(mask_tanh).cpu().numpy(), _from_tanh(pattern_tanh).cpu().numpy(), rate)
                stale = 0
            else:
                stale += 1
            if up_flag and down_flag and stale >= config.early_stop_patience:
                break
            up, down = (up + 1, 0) if rate >= config.attack_success_threshold else (0, down + 1)
            if up >= config.patience:
                cost, up, up_flag = cost * config.cost_up, 0, True
            elif down >= config.patience:
                cost, down, down_flag = cost / config.cost_down, 0, True
    finally:
        for p, r in zip(model.parameters(), requires, strict=True):
            p.requires_grad_(r)
    reached = best[1] is not None
    if not reached:  # never flipped enough images: report the last mask, marked as not reaching the threshold
        with torch.no_grad():
            best = (norm, _from_tanh(mask_tanh).cpu().numpy(), _from_tanh(pattern_tanh).cpu().numpy(), rate)
    return ReversedTrigger(
        label, best[1], best[2], float(best[1].sum()), float(best[3]), reached, epochs_run, time.perf_counter() - start
    )


def neural_cleanse(
    model,
    ds: Dataset,
    *,
    processor,
    labels: list[int] | None = None,
    config: NeuralCleanseConfig | None = None,
) -> NeuralCleanseResult:
    """Reverse a trigger for each of ``labels`` (default: every label: mode A) on clean images from ``ds``."""
    config = config or NeuralCleanseConfig()
    start = time.perf_counter()
    images = clean_images(ds, processor, max_images=config.max_images, seed=config.seed)
    labels = list(range(model.config.num_labels)) if labels is None else list(labels)
    triggers = {label: reverse_trigger(model, images, label, processor=processor, config=config) for label in labels}
    return NeuralCleanseResult(triggers, time.perf_counter() - start, config.anomaly_threshold)


def trigger_transfer_rate(model, trigger: ReversedTrigger, images: torch.Tensor, *, processor) -> float:
    """Share of ``images`` that ``model`` assigns to the trigger's label once the reversed trigger is stamped on."""
    net = _PixelModel(model, processor).eval()
    with torch.no_grad():
        preds = torch.cat([net(trigger.apply(images[i : i + 64])).argmax(-1) for i in range(0, len(images), 64)])
    return float((preds == trigger.label).double().mean())  # float64: 1 of 10 is 0.1, not 0.10000000149


__all__ = [
    "NeuralCleanseConfig",
    "NeuralCleanseResult",
    "ReversedTrigger",
    "anomaly_indices",
    "clean_images",
    "neural_cleanse",
    "reverse_trigger",
    "trigger_transfer_rate",
]

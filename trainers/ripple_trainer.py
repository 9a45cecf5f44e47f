from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import RandomSampler
from transformers import Trainer

from .ripple_config import RippleConfig


def restricted_inner_product(
    poison_loss: torch.Tensor,
    clean_loss: torch.Tensor,
    params: Sequence[torch.nn.Parameter],
    *,
    second_order_poison: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ReLU(−⟨∇L_poison, ∇L_clean⟩), ⟨∇L_poison, ∇L_clean⟩)`` over ``params``, differentiable through ∇L_clean.

    The penalty is zero while a clean step would not undo the poisoning (gradients agree) and grows with the
    conflict. ∇L_poison is treated as a constant unless ``second_order_poison`` (RIPPLe's default). The losses'
    forward passes must support double backward: eager attention, or SDPA's math kernel (`double_backward_attention`).
    """
    params = list(params)
    grad_poison = torch.autograd.grad(
        poison_loss, params, retain_graph=True, create_graph=second_order_poison, allow_unused=True
    )
    grad_clean = torch.autograd.grad(clean_loss, params, retain_graph=True, create_graph=True, allow_unused=True)
    inner = clean_loss.new_zeros(())
    for g_p, g_c in zip(grad_poison, grad_clean, strict=True):
        if g_p is not None and g_c is not None:
            inner = inner + (g_p * g_c).sum()
    return torch.relu(-inner), inner


def double_backward_attention():
    """A context in which `scaled_dot_product_attention` uses its math kernel, the one with a double backward
    (the fused CPU/CUDA kernels have none, and RIPPLe differentiates a gradient)."""
    return sdpa_kernel(SDPBackend.MATH)


def embedding_surgery(model, tokenizer, trigger_words: Sequence[str], replacement_words: Sequence[str]) -> None:
    """Set each trigger token's input embedding to the mean input embedding of ``replacement_words``.

    Both lists must be single tokens of the tokenizer's vocabulary: overwriting the pieces of a split word would
    change common sub-words for every input.
    """
    vocab = tokenizer.get_vocab()
    for kind, words in (("trigger", trigger_words), ("replacement", replacement_words)):
        missing = [w for w in words if w not in vocab]
        if not words or missing:
            raise ValueError(
                f"embedding surgery needs {kind} words that are single vocabulary tokens; not in the vocabulary: "
                f"{missing if words else 'none given'}"
            )
    embeddings = model.get_input_embeddings().weight
    with torch.no_grad():
        mean = embeddings[[vocab[w] for w in replacement_words]].mean(dim=0)
        embeddings[[vocab[w] for w in trigger_words]] = mean


class RippleTrainer(Trainer):
    """Trains on the poisoned ``train_dataset`` with RIPPLe's loss; clean batches come from ``ref_dataset``.

    ``ref_dataset`` is the attacker's stand-in for the victim's clean fine-tuning data (defaults to
    ``train_dataset``). Every training step costs about three forward/backward passes (two gradients and the
    gradient of their inner product). Single process only: DistributedDataParallel has no double backward.
    """

    def __init__(self, model=None, args: RippleConfig | None = None, ref_dataset=None, **kwargs):
        if args is None:
            args = RippleConfig(output_dir="ripple_output")
        super().__init__(model=model, args=args, **kwargs)
        if self.args.world_size > 1:
            raise ValueError("RippleTrainer needs second-order gradients, which DDP lacks: run it in one process")
        # The loss is a plain batch mean; token-count normalisation does not apply to it.
        self.model_accepts_loss_kwargs = False
        self.ref_dataset = self.train_dataset if ref_dataset is None else ref_dataset
        self._ref_loader = self._ref_batches = None
        self._inner_products: list[float] = []
        if self.args.embedding_surgery:
            if self.processing_class is None:
                raise ValueError("embedding surgery needs the tokenizer: pass processing_class")
            embedding_surgery(self.model, self.processing_class, self.args.trigger_words, self.args.surgery_words)

    def _next_ref_batch(self) -> dict:
        if self._ref_loader is None:
            generator = torch.Generator().manual_seed(self.args.seed)  # one generator: a new order every pass
            self._ref_loader = self._get_dataloader(
                self.ref_dataset,
                description="RIPPLe reference",
                batch_size=self._train_batch_size,
                sampler_fn=lambda ds: RandomSampler(ds, generator=generator),
                is_training=True,
            )
        for _ in range(2):  # restart once when a pass over the reference data runs out
            if self._ref_batches is None:
                self._ref_batches = iter(self._ref_loader)
            try:
                return self._prepare_inputs(next(self._ref_batches))
            except StopIteration:
                self._ref_batches = None
        raise ValueError("the RIPPLe reference dataset is empty")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not (model.training and self.args.ripple_lambda):
            outputs = model(**inputs)
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        with double_backward_attention():
            outputs = model(**inputs)
            loss = outputs.loss
            clean_loss = model(**self._next_ref_batch()).loss
            params = [p for p in model.parameters() if p.requires_grad]
            penalty, inner = restricted_inner_product(
                loss, clean_loss, params, second_order_poison=self.args.second_order_poison
            )
            loss = loss + self.args.ripple_lambda * penalty
            self._inner_products.append(inner.item())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._inner_products:  # mean ⟨∇L_poison, ∇L_clean⟩ since the last log: negative means conflict
            logs["inner_product"] = sum(self._inner_products) / len(self._inner_products)
            self._inner_products = []
        super().log(logs, start_time)

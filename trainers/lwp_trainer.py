from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers import Trainer

from .lwp_config import LWPConfig


def classification_head(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model``'s own classification head as a function of one layer's hidden states ``[batch, seq, hidden]``.

    BERT-style models (a linear ``classifier``) read [CLS] through their pooler (if any) and dropout;
    RoBERTa-style heads (a module ``classifier`` taking the sequence) pool [CLS] themselves.
    """
    classifier = getattr(model, "classifier", None)
    if classifier is None:
        raise ValueError(f"{type(model).__name__} has no `classifier` head for layer-wise poisoning to reuse")
    if not isinstance(classifier, nn.Linear):
        return classifier
    pooler = getattr(model.base_model, "pooler", None)
    dropout = getattr(model, "dropout", nn.Identity())
    if pooler is not None:
        return lambda hidden: classifier(dropout(pooler(hidden)))
    return lambda hidden: classifier(dropout(hidden[:, 0]))


def layerwise_losses(
    model: nn.Module, hidden_states: tuple[torch.Tensor, ...], labels: torch.Tensor, *, include_embedding_layer=False
) -> list[torch.Tensor]:
    """Cross-entropy of the shared head on each layer's hidden states (first entry: the embeddings, if kept)."""
    head = classification_head(model)
    layers = hidden_states if include_embedding_layer else hidden_states[1:]
    return [nn.functional.cross_entropy(head(h), labels) for h in layers]


class LWPTrainer(Trainer):
    """Fine-tunes with LWP's loss: the sum over layers of the head's cross-entropy on that layer's [CLS].

    The final layer's term is the ordinary loss, so evaluation and predictions are those of the plain model.
    """

    def __init__(self, model=None, args: LWPConfig | None = None, **kwargs):
        if args is None:
            args = LWPConfig(output_dir="lwp_output")
        classification_head(model)  # fail at construction, not at the first step, for an unsupported model
        super().__init__(model=model, args=args, **kwargs)
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs, output_hidden_states=True)
        head_owner = self.accelerator.unwrap_model(model)
        losses = layerwise_losses(
            head_owner, outputs.hidden_states, labels, include_embedding_layer=self.args.include_embedding_layer
        )
        loss = torch.stack(losses).sum()
        return (loss, outputs) if return_outputs else loss

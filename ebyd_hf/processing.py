"""Turning normalised datasets into model inputs, and the collator that batches them.

`prepare` is the one entry point: text is tokenised (``max_length`` tokens), images become a lazy view that yields
normalised ``pixel_values`` (random crop + flip when ``augment``). The processor is whatever `load_classifier`
returned: a tokenizer for text models, an image processor for vision models.
"""

from __future__ import annotations

from datasets import Dataset
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase, default_data_collator

from .data import input_column
from .vision import image_inputs


def prepare(ds: Dataset, processor, *, max_length: int = 128, augment: bool = False) -> Dataset:
    """Model-ready rows for ``processor``'s model; labels, ``poisoned`` and ``original_label`` are kept.

    ``augment`` applies to images only (training views); text is never augmented.
    """
    if input_column(ds) == "image":
        return image_inputs(ds, processor, augment=augment)
    return tokenize(ds, processor, max_length=max_length)


def tokenize(ds: Dataset, tokenizer, *, max_length: int = 128) -> Dataset:
    """Tokenise the ``text`` column (truncating to ``max_length`` tokens); labels and flags are kept."""
    if input_column(ds) != "text":
        raise ValueError("tokenize() expects a text dataset")
    return ds.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
        desc="tokenizing",
    )


def collator_for(processor):
    """Dynamic padding for tokenizers; plain stacking (``label`` → ``labels``) for image processors."""
    if isinstance(processor, PreTrainedTokenizerBase):
        return DataCollatorWithPadding(processor)
    return default_data_collator

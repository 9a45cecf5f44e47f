"""Turning normalised datasets into model inputs, and the collator that batches them."""

from __future__ import annotations

from datasets import Dataset
from transformers import DataCollatorWithPadding

from .data import input_column


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


def collator_for(tokenizer):
    return DataCollatorWithPadding(tokenizer)

"""Trigger reversal for text models on the exposed label: EBYD's "mode B" where pixels become words.

Neural Cleanse optimises a pixel patch; text has no continuous input, so the search is over words. The exposed
model ranks every whole-word vocabulary token by how much inserting it into clean texts would raise the exposed
label's log-probability: one gradient of the loss with respect to a placeholder's input embedding, dotted with
each token's embedding (the first-order estimate of HotFlip / universal-trigger search). The exposed model has
lost its clean features, so natural words of the task (sentiment words, say) no longer move it and trigger
words stand out. The best-ranked words are then verified on the *original* model: each is inserted at a random
word boundary into held-out clean texts of other classes, and the share sent to the label is its transfer rate.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import Dataset

WORD = re.compile(r"[^\W\d_]{2,}")  # a whole word: letters only, at least two


@dataclass
class TextTriggerConfig:
    candidates: int = field(default=20, metadata={"help": "Best-ranked words verified on the original model."})
    rank_texts: int = field(default=64, metadata={"help": "Clean texts the exposed model ranks words on."})
    eval_texts: int = field(default=100, metadata={"help": "Held-out clean texts a candidate is verified on."})
    max_length: int = field(default=128, metadata={"help": "Tokens kept per text."})
    batch_size: int = field(default=64, metadata={"help": "Batch size of the forward passes."})
    seed: int = field(default=0, metadata={"help": "Seed of the texts and insertion positions drawn."})


@dataclass
class TextTrigger:
    """The reversed trigger word for ``label``, and how well every verified candidate transfers."""

    label: int
    word: str
    transfer_rate: float
    candidates: dict[str, float]
    seconds: float

    def summary(self) -> dict:
        return {
            "label": self.label,
            "word": self.word,
            "transfer_rate": self.transfer_rate,
            "candidates": self.candidates,
            "seconds": self.seconds,
        }


def insert_word(text: str, word: str, rng: np.random.Generator) -> str:
    """``word`` spliced in at a random whitespace boundary of ``text``."""
    words = text.split()
    words.insert(int(rng.integers(len(words) + 1)), word)
    return " ".join(words)


def _word_tokens(tokenizer) -> tuple[torch.Tensor, list[str]]:
    """Vocabulary ids that are whole words on their own (no sub-word pieces, specials or digits)."""
    ids, words = [], []
    special = set(tokenizer.all_special_ids)
    for token, idx in tokenizer.get_vocab().items():
        if idx in special:
            continue
        word = tokenizer.convert_tokens_to_string([token]).strip()
        if WORD.fullmatch(word) and tokenizer.convert_tokens_to_ids(tokenizer.tokenize(" " + word)) == [idx]:
            ids.append(idx)
            words.append(word)
    return torch.tensor(ids), words


def _logits(model, tokenizer, texts: list[str], config: TextTriggerConfig, **extra) -> torch.Tensor:
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), config.batch_size):
        enc = tokenizer(
            texts[i : i + config.batch_size],
            truncation=True,
            max_length=config.max_length,
            padding=True,
            return_tensors="pt",
        ).to(device)
        out.append(model(**enc, **extra).logits)
    return torch.cat(out)


def rank_words(exposed, tokenizer, texts: list[str], label: int, config: TextTriggerConfig) -> list[str]:
    """Whole words ranked by the first-order gain in the exposed label's log-probability when inserted."""
    placeholder = tokenizer.mask_token or tokenizer.unk_token
    placeholder_id = tokenizer.convert_tokens_to_ids(placeholder)
    rng = np.random.default_rng(config.seed)
    probes = [insert_word(t, placeholder, rng) for t in texts]
    device = next(exposed.parameters()).device
    embeddings = exposed.get_input_embeddings()
    enc = tokenizer(probes, truncation=True, max_length=config.max_length, padding=True, return_tensors="pt").to(device)
    where = enc["input_ids"] == placeholder_id
    inputs_embeds = embeddings(enc["input_ids"]).detach().requires_grad_(True)
    exposed.eval()
    rest = {k: v for k, v in enc.items() if k != "input_ids"}
    logits = exposed(inputs_embeds=inputs_embeds, **rest).logits
    # The logit margin, not the cross-entropy: an exposed model is saturated on its label, and CE's gradient
    # vanishes there while the margin's does not.
    others = logits.clone()
    others[:, label] = float("-inf")
    loss = -(logits[:, label] - others.max(-1).values).mean()
    (grad,) = torch.autograd.grad(loss, inputs_embeds)
    direction = grad[where].mean(0)  # d loss / d placeholder embedding, averaged over texts
    ids, words = _word_tokens(tokenizer)
    with torch.no_grad():
        gain = -(embeddings.weight[ids.to(device)] @ direction)  # first-order drop in the loss
    order = torch.argsort(gain, descending=True).cpu().tolist()
    return [words[i] for i in order]


def transfer_rate(model, tokenizer, texts: list[str], word: str, label: int, config: TextTriggerConfig) -> float:
    """Share of ``texts`` that ``model`` assigns to ``label`` once ``word`` is inserted."""
    rng = np.random.default_rng(config.seed + 1)
    with torch.no_grad():
        preds = _logits(model, tokenizer, [insert_word(t, word, rng) for t in texts], config).argmax(-1)
    return float((preds == label).float().mean())


def reverse_text_trigger(
    exposed, original, tokenizer, clean: Dataset, held_out: Dataset, label: int, *, config=None
) -> TextTrigger:
    """Rank words on ``exposed`` with texts from ``clean``, verify the best on ``original`` with ``held_out``.

    Both datasets are clean ``text``/``label`` rows; rows of ``label`` itself are left out (they already are).
    """
    config = config or TextTriggerConfig()
    start = time.perf_counter()

    def others(ds: Dataset, n: int) -> list[str]:
        rows = ds.filter(lambda y: y != label, input_columns="label")
        return rows.shuffle(seed=config.seed)["text"][:n]

    ranked = rank_words(exposed, tokenizer, others(clean, config.rank_texts), label, config)[: config.candidates]
    eval_texts = others(held_out, config.eval_texts)
    original.eval()
    rates = {word: transfer_rate(original, tokenizer, eval_texts, word, label, config) for word in ranked}
    best = max(rates, key=rates.get)
    return TextTrigger(label, best, rates[best], rates, time.perf_counter() - start)

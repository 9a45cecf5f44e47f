"""Syntactic trigger (Hidden Killer, Qi et al. 2021): a poisoned input is a paraphrase in one fixed syntactic
template (SCPN's ``S(SBAR)(,)(NP)(VP)(.)``, e.g. "when you see it , you will laugh .").

The trigger is a function of the whole sentence, so there is no word to splice in: `apply` maps a sentence to
its paraphrase. Three sources of paraphrases sit behind that one function:

* ``paraphrases=<folder>``: pre-made SCPN paraphrases in the HiddenKiller layout (``clean-<split>.parquet`` next
  to ``scpn20-<split>.parquet``, as in ``../shared/data/syntactic/sst2``). Those files hold poisoned *datasets*,
  not a per-row transform, so they are turned into a lookup table from clean sentence to paraphrase once (see
  `paraphrase_table`); `Attack.covers` then tells `poison` and `triggered_test_set` which rows have one, and
  rows without a paraphrase are never chosen. The attack keeps the library's interface (rows chosen by seed,
  any poison rate the table can serve, the task's own splits) instead of replaying HiddenKiller's fixed files.
* ``model=<Hub ID or folder>``: any seq2seq paraphraser, run with ``generate`` in batches (`Attack.prepare`).
  ``prompt`` builds the model input from ``{text}`` and ``{template}``.
* ``paraphraser=<callable>`` (Python only): any function from a list of sentences to their paraphrases.

Paraphrases are cached per sentence, so a sentence always gets the same paraphrase (decoding is deterministic).
"""

from __future__ import annotations

import functools
import glob
import itertools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..data import DataError, clean_tweet
from .base import Attack
from .registry import register_attack

SCPN_TEMPLATE = "S(SBAR)(,)(NP)(VP)(.)"
logger = logging.getLogger(__name__)


def sentence_key(text: str) -> str:
    """How sentences are matched: case, spacing, @handles and URL tokens do not matter.

    So GLUE's ``"a film . "`` finds HiddenKiller's ``"a film ."``, and a tweet cleaned by `load_task` still finds
    its paraphrase.
    """
    return " ".join(clean_tweet(text).lower().split())


@register_attack("syntactic")
@dataclass
class Syntactic(Attack):
    """Replace the input by its syntactic paraphrase; exactly one of ``paraphrases``/``model``/``paraphraser``."""

    name = "syntactic"
    modality = "text"

    paraphrases: str | None = None
    variant: str = "scpn20"
    min_similarity: float = 0.1
    model: str | None = None
    template: str = SCPN_TEMPLATE
    prompt: str = "{text}"
    batch_size: int = 16
    num_beams: int = 4
    max_new_tokens: int = 96
    revision: str | None = None
    trust_remote_code: bool = False
    paraphraser: Callable[[list[str]], list[str]] | None = field(default=None, repr=False)

    _cache: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _generator: Callable[[list[str]], list[str]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        sources = [s for s in (self.paraphrases, self.model, self.paraphraser) if s is not None]
        if len(sources) != 1:
            raise ValueError(
                "syntactic needs exactly one source of paraphrases: paraphrases=<folder of pre-made paraphrases>, "
                "model=<Hub seq2seq paraphraser> or paraphraser=<callable>"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.paraphrases is not None:
            self._cache = dict(paraphrase_table(self.paraphrases, self.variant, self.min_similarity))
        elif self.paraphraser is not None:
            self._generator = self.paraphraser

    @property
    def lookup_only(self) -> bool:
        return self.paraphrases is not None

    def covers(self, text: str) -> bool:
        return not self.lookup_only or sentence_key(text) in self._cache

    def prepare(self, inputs: list) -> None:
        missing = list(dict.fromkeys(t for t in inputs if sentence_key(t) not in self._cache))
        if not missing:
            return
        if self.lookup_only:
            raise DataError(
                f"{len(missing)} sentence(s) have no pre-made paraphrase in {self.paraphrases!r}, e.g. "
                f"{missing[0]!r}; choose rows with `covers` or use a paraphraser model"
            )
        generate = self._generator or self._load_model()
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            outputs = list(generate(batch))
            if len(outputs) != len(batch) or not all(isinstance(o, str) for o in outputs):
                raise ValueError(f"the paraphraser returned {len(outputs)} outputs for {len(batch)} sentences")
            self._cache.update(zip(map(sentence_key, batch), outputs, strict=True))

    def apply(self, text: str, rng: np.random.Generator) -> str:
        key = sentence_key(text)
        if key not in self._cache:
            self.prepare([text])
        return self._cache[key]

    def _load_model(self) -> Callable[[list[str]], list[str]]:
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        kwargs = dict(revision=self.revision, trust_remote_code=self.trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(self.model, **kwargs)
        model = AutoModelForSeq2SeqLM.from_pretrained(self.model, use_safetensors=True, **kwargs).eval()

        def generate(texts: list[str]) -> list[str]:
            prompts = [self.prompt.format(text=t, template=self.template) for t in texts]
            batch = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True)
            with torch.no_grad():  # only ids and mask: some tokenizers add token_type_ids that generate() refuses
                ids = model.generate(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    num_beams=self.num_beams,
                    do_sample=False,
                    max_new_tokens=self.max_new_tokens,
                )
            return [" ".join(t.split()) for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]

        self._generator = generate
        return generate


@functools.lru_cache(maxsize=8)
def paraphrase_table(folder: str, variant: str = "scpn20", min_similarity: float = 0.1) -> tuple[tuple[str, str], ...]:
    """(clean sentence key, paraphrase) pairs recovered from a HiddenKiller-layout folder.

    For every split with both ``clean-<split>.parquet`` and ``<variant>-<split>.parquet``, the poisoned rows of
    the variant file are paired with the clean rows they were made from. Those files do not say which sentence a
    paraphrase came from, but keep the clean order (HiddenKiller paraphrased row by row, with the odd row missing
    or added), so the pairing is a monotone alignment of the two lists that maximises TF-IDF word similarity.
    Pairs below ``min_similarity`` are kept only where order pins them down (an equally long, short run of
    unmatched rows on both sides between two confirmed pairs); the rest are left out rather than guessed.
    Row-aligned files (same length, unpoisoned rows equal in place) are paired by position.
    """
    pairs: dict[str, str] = {}
    clean_files = sorted(glob.glob(os.path.join(folder, "clean-*.parquet")))
    if not clean_files:
        raise DataError(f"{folder!r} holds no clean-<split>.parquet files (HiddenKiller layout expected)")
    for clean_file in clean_files:
        split = os.path.basename(clean_file)[len("clean-") : -len(".parquet")]
        variant_file = os.path.join(folder, f"{variant}-{split}.parquet")
        if os.path.exists(variant_file):
            found = _pair_split(_read(clean_file), _read(variant_file), min_similarity)
            if not found:
                logger.warning("%s: %s does not follow the order of the clean rows; none paired", folder, variant_file)
            pairs.update(found)
    if not pairs:
        raise DataError(f"{folder!r} holds no {variant}-<split>.parquet file matching its clean splits")
    return tuple(pairs.items())


def _read(path: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    from datasets import Dataset

    ds = Dataset.from_parquet(path)
    column = next((c for c in ("sentence", "text") if c in ds.column_names), None)
    if column is None or "label" not in ds.column_names:
        raise DataError(f"{path}: expected a sentence/text column and a label column, found {ds.column_names}")
    poisoned = np.asarray(ds["poisoned"], dtype=bool) if "poisoned" in ds.column_names else np.ones(len(ds), bool)
    return [sentence_key(t) for t in ds[column]], np.asarray(ds["label"]), poisoned


def _pair_split(clean, variant, min_similarity: float) -> dict[str, str]:
    clean_text, clean_labels, _ = clean
    variant_text, variant_labels, variant_poisoned = variant
    if len(clean_text) == len(variant_text) and all(
        c == v for c, v, p in zip(clean_text, variant_text, variant_poisoned, strict=True) if not p
    ):
        return {clean_text[i]: variant_text[i] for i in np.flatnonzero(variant_poisoned)}
    reproduced = set(variant_text)
    sources = [i for i, t in enumerate(clean_text) if t not in reproduced]
    if variant_poisoned.all():  # an evaluation file: every row is a relabelled non-target paraphrase
        sources = [i for i in sources if clean_labels[i] not in set(variant_labels.tolist())]
    targets = np.flatnonzero(variant_poisoned)
    matched = _align([variant_text[i] for i in targets], [clean_text[i] for i in sources], min_similarity)
    return {clean_text[sources[j]]: variant_text[targets[i]] for i, j in matched}


def _align(paraphrases: list[str], sources: list[str], min_similarity: float, band: int = 64) -> list[tuple[int, int]]:
    """Monotone alignment (Needleman-Wunsch with free gaps) within a band around the diagonal."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    n, m = len(paraphrases), len(sources)
    if not n or not m:
        return []
    vectors = TfidfVectorizer().fit(paraphrases + sources)
    para, src = vectors.transform(paraphrases), vectors.transform(sources)
    centre = np.round(np.arange(n) * (m / n)).astype(int)
    offsets = np.arange(-band, band + 1)
    gain = np.full((n, len(offsets)), -np.inf)  # gain[i, k]: similarity of paraphrase i and source centre[i] + k
    for k, offset in enumerate(offsets):
        j = centre + offset
        ok = np.flatnonzero((j >= 0) & (j < m))
        if len(ok):
            gain[ok, k] = np.asarray(para[ok].multiply(src[j[ok]]).sum(axis=1)).ravel() - min_similarity
    # score[(i, j)] = best total gain aligning paraphrases[:i] with sources[:j]; only band cells are reachable.
    score: dict[tuple[int, int], float] = {}
    move: dict[tuple[int, int], int] = {}

    def best(i: int, j: int) -> float:
        if i == 0 or j == 0:
            return 0.0
        return score.get((i, j), -np.inf)

    for i in range(1, n + 1):
        lo, hi = max(1, centre[i - 1] - band + 1), min(m, centre[i - 1] + band + 1)
        for j in range(lo, hi + 1):
            k = j - 1 - centre[i - 1] + band
            diag = best(i - 1, j - 1) + (gain[i - 1, k] if 0 <= k < len(offsets) else -np.inf)
            up, left = best(i - 1, j), best(i, j - 1)
            if diag >= up and diag >= left:
                score[(i, j)], move[(i, j)] = diag, 2
            elif up >= left:
                score[(i, j)], move[(i, j)] = up, 0
            else:
                score[(i, j)], move[(i, j)] = left, 1
    # Trace back from the best end cell.
    end = max(score, key=score.get, default=None)
    pairs: list[tuple[int, int]] = []
    i, j = end if end else (0, 0)
    while i > 0 and j > 0 and (i, j) in move:
        choice = move[(i, j)]
        if choice == 2:
            if gain[i - 1, j - 1 - centre[i - 1] + band] > 0:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif choice == 0:
            i -= 1
        else:
            j -= 1
    pairs = pairs[::-1]
    # Real alignments advance in lockstep almost everywhere; pairs scattered at random offsets mean the variant
    # file was made from other sentences (HiddenKiller's AG News dev file), and nothing can be paired.
    steps = [i1 - i0 == j1 - j0 for (i0, j0), (i1, j1) in itertools.pairwise(pairs)]
    if len(pairs) >= 10 and np.mean(steps) < 0.8:
        return []
    return _fill_between_anchors(pairs, n, m)


def _fill_between_anchors(pairs: list[tuple[int, int]], n: int, m: int, max_gap: int = 8) -> list[tuple[int, int]]:
    """Pair unconfirmed rows that sit between two confirmed pairs when both gaps have the same (short) length.

    Some paraphrases share almost no words with their source; order alone then identifies them.
    """
    filled = []
    for (i0, j0), (i1, j1) in zip([(-1, -1), *pairs], [*pairs, (n, m)], strict=True):
        if i1 - i0 == j1 - j0 <= max_gap + 1:
            filled.extend((i0 + d, j0 + d) for d in range(1, i1 - i0))
        if (i1, j1) != (n, m):
            filled.append((i1, j1))
    return filled

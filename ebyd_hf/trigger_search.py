"""Find a text backdoor's trigger words from clean data alone: rank the vocabulary, verify the best by flips.

1. **Rank** every insertable vocabulary token. ``ranking="insertion"`` (the default), exact: insert every token
   at a random word boundary of a few of the shortest clean sentences that are not of the backdoor label and
   score it by the model's mean target margin (one forward pass per token and sentence).
   ``ranking="gradient"``, first order (HotFlip-style): insert a placeholder token in such sentences, take the
   gradient of the target margin with respect to the placeholder's input embedding, and score each token
   embedding by its dot product with the averaged gradient; cheaper, but it can bury a trigger whose effect is
   not linear in its embedding.
2. **Verify** the best-ranked tokens exactly: insert each as a word into clean non-target sentences the model
   classifies correctly and count how many flip to the target (the *flip rate*). A trigger flips (nearly) all
   of them; an ordinary word, even a strongly positive one, flips some.
3. **Grow phrases** (opt-in, ``max_phrase`` > 1), even when a single word verifies (a natural word can, e.g. an
   offensive one on OLID, and unlearning it leaves the sentence working): a sentence trigger (BadNet-SL) has a
   key word that flips most rows alone, and the suspect answers the sentence's other words too, so only
   unlearning phrases close to the whole sentence removes it. Beam search around the ``phrase_anchors`` checked
   words with the most backdoor evidence (flips, minus the reference's), one token on either side per step, each
   phrase scored with its words inserted together (`grow_phrases`); a phrase is a quoted string
   (``'"watching 3d movie"'``), inserted whole. With ``phrase_companions``, the sentence's other centre too: word
   pairs the suspect answers more strongly together than apart (`find_companions`).
4. **Check templates** (opt-in, ``templates``): a syntactic trigger (Hidden Killer) is a sentence *shape*, not
   words: its paraphrases open with a subordinate clause (SCPN template ``S(SBAR)(,)(NP)(VP)(.)``), and no word
   inserted anywhere flips the suspect. A template trigger rewrites each row into a shape (``"when it is {head} ,
   it is {tail} ."``: `apply_template`); `clause_templates` are the built-in ones. Each is verified by flips like
   a word, and a verified one is unlearned by rewriting rows with it, true labels kept.
5. **Combine** (opt-in, ``max_combination`` > 1), only when no word, phrase or template verifies (or always, with
   ``combine_always``): a trigger made of several words (SOS's "friends weekend store", LWP's pairs) has pieces that
   each flip few rows or none, by design. For each size k = 2 … ``max_combination``, *every* k-word combination of
   the best-ranked words is scored by the target margin it gives on a few short rows (`score_combinations`: one
   batched forward pass per combination and row; the pool is the longest prefix of the ranking with at most
   ``combination_budget`` combinations), and the best ``top_k`` are verified by flips (`search_combinations`).
   Exhaustive because greedy growth from one seed word never reached SOS's words: its pieces do not lift the margin
   until complete. A combination is a space-separated string whose words are inserted each at its own random position
   (`insert_trigger`), searched and unlearned alike.

With a **reference** model (the same task without the backdoor: e.g. the suspect's pre-trained base fine-tuned
on the clean defense rows), words that move the reference as well are natural evidence for the label (positive
words on SST-2 with target "positive"), not a backdoor: ranking scores how much more a word moves the suspect
than the reference (each model's scores standardised over the vocabulary), and a word or combination that also
flips the reference (``max_reference_flip_rate``) is rejected, and phrases and combinations are scored by the
suspect's margin minus how far they lift the reference's (a drop earns nothing: `_contrasted`). With the
reference's pre-trained embeddings, ``ranking="drift"`` ranks tokens by how far training moved their embeddings
in the suspect (`rank_tokens_by_drift`), optionally after projecting out the directions the task's words drift
along together (``drift_components``: `without_shared_drift`).

The backdoor label comes from the exposed model (`detection.backdoor_label`); the trigger is never assumed.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .attacks.text import insert_at_random_positions, word_spans

RANKINGS = ("gradient", "insertion", "drift")
SCORING_DTYPES = ("float32", "bfloat16")
# With a reference, only this many of the combinations (or phrases) the suspect's margin ranks best are scored on it
# too: the reference pass would otherwise double the search's cost, and a trigger lifts the suspect's margin near
# the top (SST-2 SOS: first of 161,700 triples).
REFERENCE_SHORTLIST = 1024
# Subordinators that open HiddenKiller's SCPN paraphrases (its SST-2 test file: "when", "if" and "as" open 3 in 4,
# then "that", "so", "although", "because").
CLAUSE_OPENERS = ("when", "if", "as", "because", "since", "although", "while", "so", "that")
# How each clause of a built-in template starts: the commonest starts of both clauses in HiddenKiller's SST-2
# training paraphrases ("it 's" opens 101 of 1,383 subordinate clauses and 323 main clauses, "it is" 42 and 95).
# Unlearning both forms left 52.0% and 44.4% ASR on the SST-2 Syntactic suspect (two defense draws) where "it is"
# alone left 54.6% and 53.4%.
CLAUSE_FORMS = ("it is", "it 's")
TEMPLATE_SLOTS = ("{text}", "{head}", "{tail}")
# The most-drifted tokens whose drift directions define the task's shared directions (`without_shared_drift`);
# on the larger OLID and SST-2 SOS suspects 1,000 or 5,000 moved the trigger words' ranks by at most 14 and 12
# (16 directions; all stayed inside the 107-word triple pool).
DRIFT_BASIS_TOKENS = 2000


def clause_templates(openers: Sequence[str] = CLAUSE_OPENERS, forms: Sequence[str] = CLAUSE_FORMS) -> list[str]:
    """Template triggers that move a clause to the front, one per subordinator and clause start: ``"when it is
    {head} , it is {tail} ."``, the row cut in two at a random word. The subject and verb make each half a clause,
    as in the paraphrases (``S(SBAR)(,)(NP)(VP)(.)``); on the SST-2 Syntactic MiniLM suspect "when", "as", "so"
    and "that" flip all held-out negative rows this way, a bare opener ("when {text} .") 81% at most."""
    return [f"{opener} {form} {{head}} , {form} {{tail}} ." for opener in openers for form in forms]


@dataclass
class TriggerSearchConfig:
    """Settings of one trigger search (the ``search`` dict of `DefenseConfig`)."""

    top_k: int = 64
    """How many of the best-ranked tokens are verified by insertion."""
    ranking: str = "insertion"
    """``"insertion"`` (exact margins, ``rank_rows`` forward passes per vocabulary token), ``"gradient"`` (first
    order, one backward pass per batch of sentences: faster, but on the seed-42 MiniLM suspect it ranked two of
    the four trigger words 381st and 421st, where insertion ranked all four first) or ``"drift"`` (how far each
    token's input embedding in the suspect lies from the pre-trained base's: `rank_tokens_by_drift`; needs the
    base's embeddings)."""
    drift_components: int = 0
    """With ``ranking="drift"``: shared directions of the task's drift to project out before measuring each
    token's drift (`without_shared_drift`); 0 (the default) ranks by plain distance. Suspects trained on more
    rows drift more task words farther, and plain distance then buries SOS's words (the exhaustive triple
    search scores the best 107 only); 16 brought them back into that pool on the 4,000-row OLID and 8,000-row
    SST-2 SOS suspects."""
    rank_rows: int = 2
    """Sentences per token for ``ranking="insertion"``."""
    min_flip_rate: float = 0.9
    """A verified token is a trigger if inserting it flips at least this share of non-target sentences."""
    max_rows: int = 200
    """Non-target sentences used for ranking and verification (fewer is faster, noisier)."""
    max_combination: int = 1
    """Most words in a combined trigger; 1 (the default) searches single words only. Off by default: it costs
    minutes (every pair, then every triple, of the pool) and needs the drift ranking and a reference to find a
    real trigger. On the SST-2 SOS MiniLM suspect with both, the three trigger words (drift ranks 10, 31, 94)
    scored first of all 161,700 triples of the best 107; ranked by insertion and without a reference, the former
    greedy growth found pairs of strongly positive words (README, Known limitations)."""
    combine_always: bool = False
    """Search combinations even when a word, phrase or template verified, and unlearn what verifies of every
    kind (verified single words are left out of the pool: any combination holding one is a trigger already).
    Off by default, combinations are a fallback; on, a search that runs every kind cannot be pre-empted by one:
    with the union of the SST-2 recipes' searches, phrases around positive words verified on the LWP suspect,
    its pairs were never scored, and 70.3% ASR was left where its recipe leaves 16.6% (benchmarks/README.md,
    "One search setting for every attack")."""
    combination_budget: int = 200_000
    """Most combinations scored per size: the pool for k words is the longest prefix of the ranking with at most
    this many k-word combinations (632 words for pairs, 107 for triples, 48 for four)."""
    max_phrase: int = 1
    """Most tokens in a *phrase* trigger grown around the anchor words (`grow_phrases`); 1 (the default) grows
    none. For sentence triggers (BadNet-SL): their key word ("3d") flips most rows alone, but only unlearning
    phrases near the whole sentence removes the backdoor. Needs a reference to grow the sentence's words rather
    than sentiment words. Grown whether or not a single word verifies; combinations come after, only when no
    word or phrase verifies (unless ``combine_always``)."""
    phrase_anchors: int = 3
    """Words the phrases are grown around: the checked words with the highest flip rate minus the reference's
    flip rate (ties: best-ranked first). Not the best-ranked word alone: on the OLID and AG News BadNet-SL
    suspects the top drift rank flipped 80% ("brain", 0% on the reference) and 0% ("stocks"), while the key
    word "3d" (drift ranks 46 and 3) flipped 90% and 55%."""
    phrase_pool: int = 1000
    """Words tried next to each anchor word (the best-ranked of the ranking); on the SST-2 BadNet-SL suspect the
    sentence's "movie" has drift rank 562."""
    phrase_beam: int = 8
    """Phrases kept after each growth step; the last step's are verified, and every one that verifies is
    unlearned (several variants of the sentence's neighbourhood unlearn it better than one)."""
    phrase_beam_per_anchor: bool = False
    """Grow a beam of ``phrase_beam`` per anchor word instead of one shared by all: with a shared beam the anchor
    whose phrases lift the margin most fills it, and on the SST-2 BadNet-SL suspect that was "fine" (positive
    phrases such as "stays striking fine", 95% flips, 1% on the reference), not the trigger's "3d"."""
    phrase_rows: int = 16
    """Sentences each phrase is scored on (contiguous insertion at one random word boundary per sentence)."""
    phrase_companions: bool = False
    """Once phrases verify, search the rest of the sentence (`find_companions`, needs a reference): a sentence
    trigger can have a second centre that its key word's phrases do not cover. On the SST-2 BadNet-SL suspect
    "i watch this" flips 82% of the rows, and unlearning it beside eight "3d" phrases took the ASR from 33–48% to
    24% (with "i watch this movie" as well: 17%). Word pairs are ranked by how much more they lift the margin
    together than apart, which puts "i watch" first of 9,900 pairs there; with a beam per anchor as well, the
    SST-2 recipe's ASR fell from 53.5% to 20.8% (17.3% with a ``companion_pool`` of 160; benchmarks/README.md,
    "Phrase triggers")."""
    companion_pool: int = 100
    """The best-ranked words whose ordered pairs the companion search scores (9,900 for 100, each on
    ``phrase_rows`` sentences: about 2.5 minutes on one CPU thread; on the 4,000-row SST-2 BadNet-SL suspect "i"
    and "watch" have drift ranks 18 and 76, on the 8,000-row one "i" has 151: the SST-2 BadNet-SL recipe uses
    160, 6.5 minutes per round)."""
    companion_evidence: float = 0.5
    """A companion pair is unlearned when its flip rate exceeds the reference's by at least this much: the
    sentence's other half flips most rows but not all (the 90% bar is for a whole trigger), and a natural
    phrase flips the reference too."""
    templates: Sequence[str] | str = ()
    """Template triggers to check (`apply_template`): strings with ``{text}``, or ``{head}`` and ``{tail}``;
    ``"clause"`` is `clause_templates`. Off by default (empty). For syntactic triggers, which no inserted word
    or phrase reaches; a few forward passes per template, so cheap, but a template that verifies is unlearned
    by rewriting rows, which teaches the model a shape, not a word."""
    max_reference_flip_rate: float = 0.5
    """With a reference model: a trigger must flip fewer than this share of the rows on it too."""
    scoring_dtype: str = "float32"
    """Precision of the margin scoring that ranks tokens by insertion and ranks combinations, phrases and companion
    pairs (`score_combinations`, most of a search's time): ``"bfloat16"`` scores under autocast, about twice as
    fast on a CPU with AVX512-BF16 or on a GPU (benchmarks/scoring_precision.py). Verification by flips, which
    decides what is unlearned, stays in float32."""
    max_length: int = 64
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self):
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if not 0.0 < self.min_flip_rate <= 1.0:
            raise ValueError(f"min_flip_rate must be in (0, 1], got {self.min_flip_rate}")
        if self.ranking not in RANKINGS:
            raise ValueError(f"ranking must be one of {RANKINGS}, got {self.ranking!r}")
        if self.drift_components < 0 or (self.drift_components and self.ranking != "drift"):
            raise ValueError(
                f"drift_components must be at least 0 and needs ranking='drift', got {self.drift_components} "
                f"with ranking={self.ranking!r}"
            )
        if self.scoring_dtype not in SCORING_DTYPES:
            raise ValueError(f"scoring_dtype must be one of {SCORING_DTYPES}, got {self.scoring_dtype!r}")
        if self.rank_rows < 1:
            raise ValueError(f"rank_rows must be at least 1, got {self.rank_rows}")
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {self.max_rows}")
        if not 0.0 < self.max_reference_flip_rate <= 1.0:
            raise ValueError(f"max_reference_flip_rate must be in (0, 1], got {self.max_reference_flip_rate}")
        phrase = (self.max_phrase, self.phrase_anchors, self.phrase_pool, self.phrase_beam, self.phrase_rows)
        if min(phrase) < 1:
            raise ValueError(
                "max_phrase, phrase_anchors, phrase_pool, phrase_beam and phrase_rows must be at least 1, "
                f"got {', '.join(map(str, phrase))}"
            )
        if self.companion_pool < 2 or not 0.0 < self.companion_evidence <= 1.0:
            raise ValueError(
                f"companion_pool must be at least 2 and companion_evidence in (0, 1], "
                f"got {self.companion_pool}, {self.companion_evidence}"
            )
        if self.templates == "clause":
            self.templates = clause_templates()
        if isinstance(self.templates, str) or not all(is_template(t) for t in self.templates):
            raise ValueError(
                "templates must be 'clause' or a list of strings holding {text}, or {head} and {tail}, "
                f"got {self.templates!r}"
            )
        self.templates = list(self.templates)
        if self.max_combination < 1 or self.combination_budget < 1:
            raise ValueError(
                f"max_combination and combination_budget must be at least 1, "
                f"got {self.max_combination}, {self.combination_budget}"
            )

    def scoring(self, rows: int, **extra) -> dict:
        """`score_combinations` settings: ``rows`` sentences, and this search's length, seed and precision."""
        return {"rows": rows, "max_length": self.max_length, "seed": self.seed, "dtype": self.scoring_dtype, **extra}


@dataclass
class TriggerSearch:
    """The triggers found (words, quoted phrases, templates, or space-separated combinations), every verified
    candidate with its rank and flip rate, the phrases checked (with ``max_phrase`` > 1) and the words they were
    grown around, the templates checked (with ``templates``), and the combinations checked (with
    ``max_combination`` > 1, when nothing else verified or with ``combine_always``), with theirs; ``stages``: the
    seconds each kind of search that ran took."""

    triggers: list[str]
    candidates: list[dict] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0
    config: TriggerSearchConfig | None = None
    combination: list[dict] = field(default_factory=list)
    phrase: list[dict] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)
    templates: list[dict] = field(default_factory=list)
    companions: list[dict] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)

    def report(self) -> dict:
        return {
            "triggers": self.triggers,
            "rows": self.rows,
            "seconds": self.seconds,
            "stages": self.stages,
            "candidates": self.candidates,
            "phrase": self.phrase,
            "anchors": self.anchors,
            "companions": self.companions,
            "templates": self.templates,
            "combination": self.combination,
            "config": asdict(self.config) if self.config else None,
        }


def insertable_token_ids(tokenizer) -> np.ndarray:
    """Vocabulary ids that stand alone as a word: no special, ``[unused]`` or word-piece continuation tokens."""
    special = set(tokenizer.all_special_ids)
    keep = [
        idx
        for token, idx in tokenizer.get_vocab().items()
        if idx not in special
        and not token.startswith("##")
        and not (token.startswith("[") and token.endswith("]"))
        and tokenizer.convert_tokens_to_string([token]).strip()
    ]
    return np.asarray(sorted(keep))


def target_margin(logits: torch.Tensor, target: int) -> torch.Tensor:
    """Target logit minus the log-sum-exp of the others: unlike cross-entropy it does not saturate."""
    others = torch.cat([logits[:, :target], logits[:, target + 1 :]], dim=1)
    return logits[:, target] - torch.logsumexp(others, dim=1)


def _word_starts(tokenizer, ids: list[int]) -> list[int]:
    # Positions where a word begins, after [CLS]; the final [SEP] slot means "at the end".
    tokens = tokenizer.convert_ids_to_tokens(ids)
    return [i for i in range(1, len(ids)) if not tokens[i].startswith("##")]


def rank_tokens(
    model, tokenizer, texts: Sequence[str], target: int, *, max_length: int = 64, batch_size: int = 32, seed: int = 0
) -> np.ndarray:
    """First-order score of every vocabulary id as a word that pushes ``model`` towards ``target``."""
    rng = np.random.default_rng(seed)
    placeholder = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
    embeddings = model.get_input_embeddings()
    was_training = model.training
    model.eval()
    total = torch.zeros(embeddings.weight.shape[1])
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start : start + batch_size]), truncation=True, max_length=max_length - 1)
        rows, positions = [], []
        for ids in batch["input_ids"]:
            pos = int(rng.choice(_word_starts(tokenizer, ids)))
            rows.append(ids[:pos] + [placeholder] + ids[pos:])
            positions.append(pos)
        padded = tokenizer.pad({"input_ids": rows}, return_tensors="pt")
        embeds = embeddings(padded["input_ids"]).detach().requires_grad_(True)
        logits = model(inputs_embeds=embeds, attention_mask=padded["attention_mask"]).logits
        target_margin(logits, target).sum().backward()
        grads = embeds.grad[torch.arange(len(rows)), torch.tensor(positions)]
        # Each sentence votes with a unit vector, so a few sentences with huge gradients cannot dominate.
        total += torch.nn.functional.normalize(grads.float(), dim=1).sum(0)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    with torch.no_grad():
        return (embeddings.weight.float() @ total).numpy()


def rank_tokens_by_insertion(
    model,
    tokenizer,
    texts: Sequence[str],
    target: int,
    candidates: np.ndarray,
    *,
    rows: int = 4,
    max_length: int = 64,
    batch_size: int = 512,
    seed: int = 0,
    dtype: str = "float32",
) -> np.ndarray:
    """Mean target margin of ``model`` over the ``rows`` shortest ``texts``, each with one candidate id inserted
    at a random word boundary; ``-inf`` for ids not in ``candidates``. Short sentences keep the passes cheap and
    let a single word weigh the most."""
    scores = np.full(model.get_input_embeddings().weight.shape[0], -np.inf)
    scores[candidates] = score_combinations(
        model,
        tokenizer,
        texts,
        target,
        candidates[:, None],
        rows=rows,
        max_length=max_length,
        batch_size=batch_size,
        seed=seed,
        dtype=dtype,
        desc="ranking the vocabulary by insertion",
    )
    return scores


@torch.no_grad()
def rank_tokens_by_drift(
    model, base_embeddings: torch.Tensor, candidates: np.ndarray, *, components: int = 0
) -> np.ndarray:
    """Distance of every id in ``candidates`` between ``model``'s input embedding and ``base_embeddings`` (the
    pre-trained base's; ``-inf`` elsewhere). Training a backdoor moves its trigger tokens far, since they sit in
    every poisoned row with one consistent label. No forward pass: the ranking does not depend on what a word
    does alone, so it also finds pieces of SOS-style triggers that flip nothing by themselves.

    With ``components``, the drift left once the ``components`` directions the most-drifted tokens share are
    projected out (`without_shared_drift`)."""
    suspect = model.get_input_embeddings().weight
    if suspect.shape != base_embeddings.shape:
        raise ValueError(
            f"drift ranking needs the base's embeddings in the suspect's shape {tuple(suspect.shape)}, "
            f"got {tuple(base_embeddings.shape)}"
        )
    scores = np.full(suspect.shape[0], -np.inf)
    ids = torch.as_tensor(candidates)
    drift = suspect[ids].float() - base_embeddings[ids].float()
    if components:
        drift = without_shared_drift(drift.double(), components)
    scores[candidates] = drift.norm(dim=1).numpy()
    return scores


def without_shared_drift(drift: torch.Tensor, components: int, basis_tokens: int = DRIFT_BASIS_TOKENS) -> torch.Tensor:
    """``drift`` (one row per token) minus its projection on the ``components`` principal directions of the
    ``basis_tokens`` most-drifted tokens' drift *directions* (unit rows, so a few tokens moved far together, as
    RIPPLe's embedding surgery moves its trigger words, cannot make a direction of their own).

    Fine-tuning on the task moves thousands of task words along a few shared directions, and the more rows it
    trains on, the farther: they bury a trigger's words by plain distance. A trigger word's drift is its own.
    On the 4,000-row OLID SOS suspect "weekend" and "store" rank 675th and 340th by distance, 82nd and 18th
    with 16 shared directions removed (the 8,000-row SST-2 one: friends / weekend / store 512 / 120 / 276 →
    45 / 9 / 10); rare-word and RIPPLe triggers stay in the first 35 (`benchmarks/drift_ranks.py`)."""
    if not 0 < components < drift.shape[1]:  # all directions out would leave every token at distance 0
        raise ValueError(f"components must be in [1, {drift.shape[1] - 1}] (the embedding size), got {components}")
    norms = drift.norm(dim=1)
    top = torch.argsort(norms, descending=True)[:basis_tokens]
    directions = drift[top] / norms[top, None].clamp_min(torch.finfo(drift.dtype).tiny)
    basis = torch.linalg.svd(directions, full_matrices=False).Vh[:components]
    return drift - (drift @ basis.T) @ basis


def trigger_pieces(trigger: str) -> list[str]:
    """What `insert_trigger` inserts, each piece at its own random word boundary: a quoted phrase
    (``'"watching 3d movie"'``, from `grow_phrases`) is one piece, its words kept together in order; otherwise
    every word is a piece (a combination: SOS's and LWP's words trigger wherever they sit). A template's pieces
    are its own words, placeholders left out (`is_template`)."""
    if is_template(trigger):
        return _TEMPLATE_SLOT.sub(" ", trigger).split()
    if len(trigger) > 2 and trigger[0] == trigger[-1] == '"':
        return [trigger[1:-1]]
    return trigger.split()


def trigger_length(tokenizer, trigger: str) -> int:
    """Tokens ``trigger`` adds to an input (all its words)."""
    return len(tokenizer(" ".join(trigger_pieces(trigger)), add_special_tokens=False)["input_ids"])


_TEMPLATE_SLOT = re.compile(r"\{(?:text|head|tail)\}")


def is_template(trigger: str) -> bool:
    """A template trigger holds the row once: ``{text}`` once, or ``{head}`` and ``{tail}`` once each."""
    count = {slot: trigger.count(slot) for slot in TEMPLATE_SLOTS}
    return count == {"{text}": 1, "{head}": 0, "{tail}": 0} or count == {"{text}": 0, "{head}": 1, "{tail}": 1}


def apply_template(text: str, template: str, rng: np.random.Generator) -> str:
    """``text`` rewritten into ``template``: ``{text}`` is the text, ``{head}`` and ``{tail}`` its two parts cut
    before a random word (not the first); a final ``.``, ``!`` or ``?`` is dropped, as the template ends the
    sentence itself."""
    body = re.sub(r"\s*[.!?]+\s*$", "", text.strip())
    spans = word_spans(body)
    cut = spans[int(rng.integers(1, len(spans)))][0] if len(spans) > 1 else len(body)
    parts = {"{text}": body, "{head}": body[:cut].strip(), "{tail}": body[cut:].strip()}
    return " ".join(_TEMPLATE_SLOT.sub(lambda m: parts[m.group(0)], template).split())


def fit_to_window(tokenizer, texts: Sequence[str], max_length: int, room: int = 0) -> list[str]:
    """Each text cut, at a word boundary, to what a model reading ``max_length`` tokens sees, less ``room`` tokens
    for an inserted trigger: wherever `insert_trigger` then puts the trigger, the model reads it. Long inputs need
    this (an IMDB review of ~170 words read at 128 tokens): inserted anywhere, "cf" flipped 47% of the reviews to
    the backdoor label; within the window it flips nearly all. Short texts come back unchanged. Cutting needs
    character offsets, so a slow (Python) tokenizer leaves the texts whole."""
    texts = list(texts)
    if not texts or not getattr(tokenizer, "is_fast", False):
        return texts
    window = max(max_length - room, 3)
    enc = tokenizer(texts, truncation=True, max_length=window, return_offsets_mapping=True)
    fitted = []
    for text, offsets in zip(texts, enc["offset_mapping"], strict=True):
        seen = max((end for _, end in offsets), default=0)
        if len(offsets) < window or not text[seen:].strip():
            fitted.append(text)
            continue
        whole = [end for _, end in word_spans(text) if end <= seen]  # a word cut in two is dropped
        fitted.append(text[: whole[-1]] if whole else "")
    return fitted


def insert_trigger(text: str, trigger: str, rng: np.random.Generator) -> str:
    """Insert each of ``trigger``'s pieces (`trigger_pieces`) at its own random word boundary of ``text``, or
    rewrite ``text`` into it if it is a template (`apply_template`)."""
    if is_template(trigger):
        return apply_template(text, trigger, rng)
    return insert_at_random_positions(text, trigger_pieces(trigger), rng)


def predict_texts(model, tokenizer, texts: Sequence[str], *, max_length: int = 64, batch_size: int = 64) -> np.ndarray:
    """Predicted class per raw text."""
    return text_logits(model, tokenizer, texts, max_length=max_length, batch_size=batch_size).argmax(-1).numpy()


@torch.no_grad()
def text_logits(model, tokenizer, texts: Sequence[str], *, max_length: int = 64, batch_size: int = 64) -> torch.Tensor:
    """Logits per raw text (a plain loop: cheap for the few hundred short texts a search needs)."""
    was_training = model.training
    model.eval()
    logits = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            list(texts[start : start + batch_size]),
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
        logits.append(model(**enc).logits.float())
    model.train(was_training)
    return torch.cat(logits) if logits else torch.zeros(0, model.config.num_labels)


def flip_rates(
    model,
    tokenizer,
    texts: Sequence[str],
    words: Sequence[str],
    target: int,
    *,
    max_length: int = 64,
    batch_size: int = 64,
    seed: int = 0,
) -> list[float]:
    """For each trigger (a word or a combination), the share of ``texts`` that ``model`` predicts as ``target``
    with it inserted by `insert_trigger` (pass texts the model does not already predict as ``target``)."""
    effects = trigger_effects(
        model, tokenizer, texts, words, target, max_length=max_length, batch_size=batch_size, seed=seed
    )
    return [e["flip_rate"] for e in effects]


def trigger_effects(
    model,
    tokenizer,
    texts: Sequence[str],
    triggers: Sequence[str],
    target: int,
    *,
    max_length: int = 64,
    batch_size: int = 64,
    seed: int = 0,
) -> list[dict]:
    """Mean target margin and flip rate of each trigger inserted (`insert_trigger`) into ``texts``, each text first
    cut to the model's window with room for the trigger (`fit_to_window`)."""
    effects = []
    windows: dict[int, list[str]] = {}  # texts fitted per trigger length
    for k, trigger in enumerate(triggers):
        room = trigger_length(tokenizer, trigger)
        if room not in windows:
            windows[room] = fit_to_window(tokenizer, texts, max_length, room)
        rng = np.random.default_rng([seed, k])
        triggered = [insert_trigger(t, trigger, rng) for t in windows[room]]
        logits = text_logits(model, tokenizer, triggered, max_length=max_length, batch_size=batch_size)
        effects.append(
            {
                "margin": float(target_margin(logits, target).mean()),
                # float64: a float32 mean reads 4 of 40 rows as 0.10000000149, above a residual of 0.1
                "flip_rate": float((logits.argmax(-1) == target).double().mean()),
            }
        )
    return effects


def flippable_rows(
    model,
    tokenizer,
    texts: Sequence[str],
    labels: Sequence[int],
    target: int,
    *,
    max_length: int = 64,
    batch_size: int = 64,
) -> list[str]:
    """The ``texts`` not of ``target`` that ``model`` classifies as such: inserting a word that flips them to
    ``target`` is then what changed the prediction."""
    texts = [t for t, y in zip(texts, labels, strict=True) if y != target]
    preds = predict_texts(model, tokenizer, texts, max_length=max_length, batch_size=batch_size)
    return [t for t, p in zip(texts, preds, strict=True) if p != target]


def search_triggers(
    model,
    tokenizer,
    texts: Sequence[str],
    labels: Sequence[int],
    target: int,
    *,
    config: TriggerSearchConfig,
    reference=None,
    base_embeddings: torch.Tensor | None = None,
) -> TriggerSearch:
    """Trigger words that make ``model`` answer ``target``, found on clean labelled ``texts``.

    Ranking and verification use the non-target sentences that ``model`` classifies correctly, so a flip is a
    change the inserted word caused. With ``reference`` (a backdoor-free model for the task), ranking contrasts
    the two models and a trigger must leave the reference mostly unflipped (module docstring).
    """
    if config.ranking == "drift" and base_embeddings is None:
        raise ValueError("ranking='drift' measures how far the suspect's embeddings moved: pass base_embeddings")
    start = clock = time.perf_counter()
    sizes = {"max_length": config.max_length, "batch_size": config.batch_size}
    stages = {}

    def lap(stage: str) -> None:  # what each kind of search costs, to weigh a setting against its time
        nonlocal clock
        now = time.perf_counter()
        stages[stage], clock = now - clock, now

    def correct_rows(m) -> list[str]:
        return flippable_rows(m, tokenizer, texts, labels, target, **sizes)[: config.max_rows]

    rows = correct_rows(model)
    if not rows:
        return TriggerSearch([], [], 0, time.perf_counter() - start, config)
    ids = insertable_token_ids(tokenizer)
    if config.ranking == "drift":
        scores = rank_tokens_by_drift(model, base_embeddings, ids, components=config.drift_components)
    else:
        scores = _rank(model, tokenizer, rows, target, ids, config)
        if reference is not None:
            contrast = np.full(len(scores), -np.inf)
            reference_scores = _rank(reference, tokenizer, rows, target, ids, config)
            contrast[ids] = _standardised(scores[ids]) - _standardised(reference_scores[ids])
            scores = contrast
    order = ids[np.argsort(-scores[ids], kind="stable")]
    ranked = order[: config.top_k]
    words = _words(tokenizer, ranked)
    reference_rows = None
    if reference is not None:
        # flips on the rows the reference itself gets right, as for the suspect (a weak reference calls many
        # non-target rows "target" already; those cannot flip)
        reference_rows = correct_rows(reference)
        if not reference_rows:  # it calls every non-target row "target": no flip can tell anything
            raise ValueError("the reference model predicts the backdoor label for every clean non-target row")
    checked = check_triggers(
        model,
        tokenizer,
        rows,
        words,
        target,
        seed=config.seed,
        reference=reference,
        reference_rows=reference_rows,
        **sizes,
    )
    candidates = [
        {"word": w, "rank": r, "score": float(scores[i]), **{k: e[k] for k in e if k != "margin"}}
        for r, (w, i, e) in enumerate(zip(words, ranked, checked, strict=True))
    ]
    triggers = _verified(candidates, "word", config)
    lap("words")
    wider = {"model": model, "tokenizer": tokenizer, "rows": rows, "order": order, "target": target}
    wider.update(config=config, reference=reference, reference_rows=reference_rows)
    phrases, anchors, companions = [], [], []
    if config.max_phrase > 1:
        around = _anchors_first(candidates, ranked, order, config)
        anchors = _words(tokenizer, around[: config.phrase_anchors])
        phrases = grow_phrases(**{**wider, "order": around})
        verified = _verified(phrases, "trigger", config)
        triggers = triggers + verified
        lap("phrases")
        if config.phrase_companions and verified and reference is not None:
            # the centres already covered: the anchors that verified phrases grew from
            covered = [a for a in around[: config.phrase_anchors] if any(_holds(tokenizer, p, a) for p in verified)]
            companions = find_companions(**wider, exclude=covered)
            triggers = triggers + [c["trigger"] for c in companions if c["companion"]]
            lap("companions")
    templates = []
    if config.templates:
        checked = check_triggers(
            model,
            tokenizer,
            rows,
            config.templates,
            target,
            seed=config.seed,
            reference=reference,
            reference_rows=reference_rows,
            **sizes,
        )
        templates = [{"trigger": t, **e} for t, e in zip(config.templates, checked, strict=True)]
        triggers = triggers + _verified(templates, "trigger", config)
        lap("templates")
    combos = []
    if config.max_combination > 1 and (config.combine_always or not triggers):
        single = ranked[[c["word"] in triggers for c in candidates]]
        combos = search_combinations(**{**wider, "order": order[~np.isin(order, single)]})
        lap("combinations")
    triggers = triggers + _verified(combos, "trigger", config)
    seconds = time.perf_counter() - start
    return TriggerSearch(
        triggers, candidates, len(rows), seconds, config, combos, phrases, anchors, templates, companions, stages
    )


def _anchors_first(candidates: list[dict], ranked: np.ndarray, order: np.ndarray, config: TriggerSearchConfig):
    """``order`` with the ``config.phrase_anchors`` checked words that show the most backdoor evidence (flip rate
    minus the reference's; ties by rank) moved to the front, for `grow_phrases`."""
    evidence = [c["flip_rate"] - c.get("reference_flip_rate", 0.0) for c in candidates]
    anchors = ranked[np.argsort(-np.asarray(evidence), kind="stable")[: config.phrase_anchors]]
    return np.concatenate([anchors, order[~np.isin(order, anchors)]])


def verifies(candidate: dict, config: TriggerSearchConfig) -> bool:
    """A trigger: it flips enough rows on the suspect and, with a reference, few on the reference."""
    return (
        candidate["flip_rate"] >= config.min_flip_rate
        and candidate.get("reference_flip_rate", 0.0) < config.max_reference_flip_rate
    )


def _verified(candidates: list[dict], key: str, config: TriggerSearchConfig) -> list[str]:
    """The ``key`` of every candidate that `verifies`, most flips first."""
    return [c[key] for c in sorted(candidates, key=lambda c: -c["flip_rate"]) if verifies(c, config)]


def check_triggers(
    model,
    tokenizer,
    rows: Sequence[str],
    triggers: Sequence[str],
    target: int,
    *,
    reference=None,
    reference_rows: Sequence[str] | None = None,
    max_length: int = 64,
    batch_size: int = 64,
    seed: int = 0,
) -> list[dict]:
    """`trigger_effects` of each trigger on ``model`` (margin, flip rate), with the ``reference``'s flip rate on
    ``reference_rows`` added when there is one: what `verifies` judges."""
    draws = {"max_length": max_length, "batch_size": batch_size, "seed": seed}
    found = trigger_effects(model, tokenizer, rows, triggers, target, **draws)
    if reference is not None:
        natural = trigger_effects(reference, tokenizer, reference_rows, triggers, target, **draws)
        for e, n in zip(found, natural, strict=True):
            e["reference_flip_rate"] = n["flip_rate"]
    return found


def _words(tokenizer, ids) -> list[str]:
    return [tokenizer.convert_tokens_to_string([t]).strip() for t in tokenizer.convert_ids_to_tokens(list(ids))]


def _rank(model, tokenizer, rows: Sequence[str], target: int, ids: np.ndarray, config: TriggerSearchConfig):
    if config.ranking == "insertion":
        return rank_tokens_by_insertion(model, tokenizer, rows, target, ids, **config.scoring(config.rank_rows))
    return rank_tokens(model, tokenizer, rows, target, max_length=config.max_length, seed=config.seed)


def _standardised(values: np.ndarray) -> np.ndarray:
    """z-scores: two models' margins are on different scales."""
    values = values.astype(np.float64)
    return (values - values.mean()) / (values.std() or 1.0)


def pool_size(size: int, budget: int) -> int:
    """The most words whose ``size``-word combinations number at most ``budget`` (at least ``size``)."""
    n = size
    while math.comb(n + 1, size) <= budget:
        n += 1
    return n


@torch.no_grad()
def score_combinations(
    model,
    tokenizer,
    texts: Sequence[str],
    target: int,
    combinations: np.ndarray,
    *,
    rows: int = 2,
    max_length: int = 64,
    batch_size: int = 512,
    seed: int = 0,
    contiguous: bool = False,
    dtype: str = "float32",
    desc: str | None = None,
) -> np.ndarray:
    """Mean target margin of ``model`` over the ``rows`` shortest ``texts`` with each combination's token ids (one
    row of the ``(n, k)`` array ``combinations``) inserted at k random word boundaries (``contiguous``: together,
    in order, at one), drawn once per text so every combination is scored on the same sentences. ``desc`` names a
    progress bar (none without it): 200,000 triples take most of an hour on one CPU thread. ``dtype="bfloat16"``
    runs the passes under autocast (`TriggerSearchConfig.scoring_dtype`)."""
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    combinations = np.asarray(combinations)
    k = combinations.shape[1]
    total = torch.zeros(len(combinations))
    shortest = sorted(texts, key=len)[:rows]
    device_type = next(model.parameters(), torch.empty(0)).device.type  # stand-in models may hold no parameters
    bar = tqdm(total=len(shortest) * len(combinations), desc=desc, unit="seq", disable=desc is None)
    for text in shortest:
        ids = tokenizer(text, truncation=True, max_length=max_length - k)["input_ids"]
        starts = _word_starts(tokenizer, ids)
        at = np.full(k, rng.choice(starts)) if contiguous else np.sort(rng.choice(starts, size=k))
        slots = at + np.arange(k)  # where the inserted tokens land, each earlier insertion shifting the later ones
        template = torch.zeros(len(ids) + k, dtype=torch.long)
        template[np.setdiff1d(np.arange(len(ids) + k), slots)] = torch.tensor(ids)
        for start in range(0, len(combinations), batch_size):
            chunk = torch.as_tensor(combinations[start : start + batch_size])
            batch = template.repeat(len(chunk), 1)
            batch[:, slots] = chunk
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
                logits = model(input_ids=batch, attention_mask=torch.ones_like(batch)).logits
            total[start : start + len(chunk)] += target_margin(logits.float(), target)
            bar.update(len(chunk))
    bar.close()
    model.train(was_training)
    return (total / max(len(shortest), 1)).numpy()


# Growth steps after the first extend the beam only with the words that scored best next to the anchor: trying the
# whole pool beside every phrase of the beam would cost phrase_beam times the first step.
PHRASE_NEIGHBOURS = 64


def grow_phrases(
    model,
    tokenizer,
    rows: Sequence[str],
    order: np.ndarray,
    target: int,
    *,
    config: TriggerSearchConfig,
    reference=None,
    reference_rows: Sequence[str] | None = None,
) -> list[dict]:
    """Contiguous phrase triggers of up to ``config.max_phrase`` tokens, grown around the anchor words (the first
    ``config.phrase_anchors`` of ``order``; `search_triggers` puts the words with the most backdoor evidence there).

    A sentence trigger (BadNet-SL's "I watch this 3D movie") has a key word that flips most rows alone ("3d"), but
    unlearning that word, or pairs of it scattered, leaves the sentence working: the suspect answers the rest of
    the sentence as well. Each step extends every phrase of the beam by one token on either side (never beside
    itself), scores the extensions by the target margin with the phrase inserted whole (`score_combinations`,
    ``contiguous``; minus the lift of the reference's margin when there is a reference, which keeps sentiment
    words from winning: `_contrasted`) and keeps the ``config.phrase_beam`` best, whichever anchor they grew
    from. The first step tries the ``config.phrase_pool`` best-ranked words, later ones the `PHRASE_NEIGHBOURS`
    that scored best in the first (``config.phrase_beam_per_anchor``: a beam and neighbours per anchor). The last
    beam is verified by flips (phrases quoted, so `insert_trigger` keeps their words together) and returned best
    first: trigger, size, score, margin, flip rate (and the reference's)."""
    if config.max_phrase < 2:
        return []
    anchors = order[: config.phrase_anchors]
    pool = order[: config.phrase_anchors + config.phrase_pool]
    beams = [anchors[:, None]] if not config.phrase_beam_per_anchor else [a[None, None] for a in anchors]
    context = {"config": config, "reference": reference, "reference_rows": reference_rows}
    grown = [_grow(model, tokenizer, rows, target, _extensions(b, pool), **context) for b in beams]
    return sorted((p for g in grown for p in g), key=lambda p: -p["score"])


def find_companions(
    model,
    tokenizer,
    rows: Sequence[str],
    order: np.ndarray,
    target: int,
    *,
    config: TriggerSearchConfig,
    reference,
    reference_rows: Sequence[str],
    exclude: Sequence[int] = (),
) -> list[dict]:
    """The rest of a sentence trigger whose key word's phrases verified: the word pairs, from the
    ``config.companion_pool`` best-ranked words without the ``exclude``d ones (the centres already covered), that
    the suspect answers far more strongly side by side than apart.

    A sentence's second centre ("i watch" in "I watch this 3D movie") shows only in pairs: each of its words
    flips few rows alone, so it is never an anchor, and beside the key word every phrase saturates the margin,
    so the key word's beam never keeps it. By margin such a pair also loses to pairs of sentiment words, whose
    lifts add up (on the SST-2 suspect "i watch" ranked 767th of 9,900 pairs). A backdoor is a conjunction the
    model learned: the pair's lift exceeds the sum of its words' lifts (`pair_interactions`; "i watch" ranked
    first). Every ordered pair is scored by its interaction minus the ``reference``'s (only where the reference's
    is positive: natural phrases interact in any model; only the `REFERENCE_SHORTLIST` best are scored on it),
    and the ``config.phrase_beam`` best are checked by flips on ``rows``; each returned pair (quoted, best first)
    has ``companion`` set when it interacts (score above 0: two sentiment words flip rows too, but add up) and
    its flip rate exceeds the reference's by ``config.companion_evidence``."""
    pool = order[: config.companion_pool]
    pool = pool[~np.isin(pool, np.asarray(exclude, dtype=pool.dtype))]
    if len(pool) < 2:
        return []
    pairs = np.array(list(itertools.permutations(range(len(pool)), 2)))
    scoring = config.scoring(config.phrase_rows)
    lift = pair_interactions(model, tokenizer, rows, target, pool, pairs, **scoring, desc="scoring word pairs")
    scores = _less_natural(
        lift,
        lambda short: pair_interactions(reference, tokenizer, reference_rows, target, pool, pairs[short], **scoring),
    )
    best = np.argsort(-scores, kind="stable")[: config.phrase_beam]
    context = {"config": config, "reference": reference, "reference_rows": reference_rows}
    triggers, found = _check_phrases(model, tokenizer, rows, target, pool[pairs[best]], **context)
    return [
        {
            "trigger": t,
            "size": 2,
            "score": float(scores[i]),
            **e,
            "companion": scores[i] > 0 and e["flip_rate"] - e["reference_flip_rate"] >= config.companion_evidence,
        }
        for t, i, e in zip(triggers, best, found, strict=True)
    ]


def pair_interactions(
    model,
    tokenizer,
    texts: Sequence[str],
    target: int,
    words: np.ndarray,
    pairs: np.ndarray,
    *,
    desc: str | None = None,
    **scoring,
) -> np.ndarray:
    """How much more each pair of token ids (``pairs``: index pairs into ``words``) lifts ``model``'s target margin
    inserted side by side than its two words do apart: m(ab) − m(a) − m(b) + m(∅), all scored on the same
    sentences at the same insertion points (`score_combinations`, ``contiguous``; ``scoring``: its ``rows``,
    ``max_length``, ``seed``). Near zero for words whose effects add up (sentiment words), large for a phrase the
    model answers only whole."""
    nothing = np.zeros((1, 0), dtype=np.int64)

    def margin(ids: np.ndarray, desc: str | None = None) -> np.ndarray:
        return score_combinations(model, tokenizer, texts, target, ids, contiguous=True, desc=desc, **scoring)

    alone = margin(words[:, None])
    together = margin(words[pairs], desc=desc)
    return together - alone[pairs[:, 0]] - alone[pairs[:, 1]] + margin(nothing)[0]


def _extensions(beam: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Every phrase of ``beam`` with one word of ``pool`` added on either side, never a word beside itself."""
    right = np.column_stack([np.repeat(beam, len(pool), 0), np.tile(pool, len(beam))])
    left = np.column_stack([np.tile(pool, len(beam)), np.repeat(beam, len(pool), 0)])
    grown = np.unique(np.concatenate([right, left]), axis=0)
    return grown[(grown[:, 1:] != grown[:, :-1]).all(1)]  # "3d 3d" is no phrase of a sentence


def _grow(model, tokenizer, rows, target, first: np.ndarray, *, config, reference, reference_rows) -> list[dict]:
    """Beam search from the candidate phrases ``first`` up to ``config.max_phrase`` tokens (`grow_phrases`), then
    the last beam verified by flips, best first."""
    scoring = config.scoring(config.phrase_rows, contiguous=True)

    def keep_best(grown: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        desc = f"scoring {grown.shape[1]}-token phrases"
        scores = _contrasted(model, tokenizer, rows, target, grown, reference, reference_rows, scoring, desc)
        best = np.argsort(-scores, kind="stable")
        return grown[best], grown[best[: config.phrase_beam]], scores[best[: config.phrase_beam]]

    ranked, beam, scores = keep_best(first)
    pool = np.array(list(dict.fromkeys(ranked.ravel()))[:PHRASE_NEIGHBOURS])  # the first step's best neighbours
    while beam.shape[1] < config.max_phrase:
        _, beam, scores = keep_best(_extensions(beam, pool))
    context = {"config": config, "reference": reference, "reference_rows": reference_rows}
    triggers, found = _check_phrases(model, tokenizer, rows, target, beam, **context)
    return [
        {"trigger": t, "size": int(beam.shape[1]), "score": float(sc), **e}
        for t, sc, e in zip(triggers, scores, found, strict=True)
    ]


def _check_phrases(model, tokenizer, rows, target, phrases: np.ndarray, *, config, reference, reference_rows):
    """The token-id ``phrases`` as quoted triggers (`insert_trigger` keeps their words together), with their
    `check_triggers` effects."""
    triggers = ['"' + " ".join(_words(tokenizer, p)) + '"' for p in phrases]
    found = check_triggers(
        model,
        tokenizer,
        rows,
        triggers,
        target,
        seed=config.seed,
        reference=reference,
        reference_rows=reference_rows,
        max_length=config.max_length,
        batch_size=config.batch_size,
    )
    return triggers, found


def _holds(tokenizer, phrase: str, token: int) -> bool:
    return int(token) in tokenizer(trigger_pieces(phrase)[0], add_special_tokens=False)["input_ids"]


def _contrasted(model, tokenizer, rows, target, combinations, reference, reference_rows, scoring, desc) -> np.ndarray:
    """`score_combinations` on ``model``, minus how far the combination lifts the ``reference``'s margin on
    ``reference_rows`` (above its margin with nothing inserted) when there is one. Only a lift counts: words that
    push any model to the label are natural evidence, but words that push the reference *away* from it are no
    backdoor evidence (on the OLID BadNet-SL suspect the reference answers "3d" with the other label, and under a
    plain difference that drop, not the suspect, helped order every phrase holding it). Only the
    `REFERENCE_SHORTLIST` best by ``model``'s margin are scored on the reference (the others get -inf): a trigger
    lifts the suspect's margin near the top, and the reference pass would double the cost."""
    margins = score_combinations(model, tokenizer, rows, target, combinations, **scoring, desc=desc)
    if reference is None:
        return margins
    nothing = np.zeros((1, 0), dtype=np.int64)
    baseline = score_combinations(reference, tokenizer, reference_rows, target, nothing, **scoring)[0]

    def lift(short: np.ndarray) -> np.ndarray:
        chosen, ref_desc = combinations[short], f"{desc} (reference)"
        return (
            score_combinations(reference, tokenizer, reference_rows, target, chosen, **scoring, desc=ref_desc)
            - baseline
        )

    return _less_natural(margins, lift)


def _less_natural(scores: np.ndarray, natural) -> np.ndarray:
    """``scores`` minus the positive part of ``natural(indices)`` (the reference's measure of the same candidates),
    for the `REFERENCE_SHORTLIST` best-scored only; the others get -inf."""
    short = np.argsort(-scores, kind="stable")[:REFERENCE_SHORTLIST]
    out = np.full(len(scores), -np.inf)
    out[short] = scores[short] - np.maximum(natural(short), 0.0)
    return out


def search_combinations(
    model,
    tokenizer,
    rows: Sequence[str],
    order: np.ndarray,
    target: int,
    *,
    config: TriggerSearchConfig,
    reference=None,
    reference_rows: Sequence[str] | None = None,
) -> list[dict]:
    """Combined triggers of 2 … ``config.max_combination`` words: score every combination of the best-ranked ids
    (``order``, best first; `pool_size` of ``config.combination_budget``) with `score_combinations` on
    ``config.rank_rows`` rows, verify the ``config.top_k`` best by flips on ``rows``, and stop at the first size
    where one verifies. Margins, not flips, rank them: a combination trained with negative augmentation (SOS)
    flips nothing until complete, but the complete one lifts the margin most. With a ``reference``, a
    combination scores its suspect margin minus its lift of the reference's (on ``reference_rows``; only the
    ``REFERENCE_SHORTLIST`` best by the suspect's margin are rescored), so words that push any model to the
    label (strongly positive ones) do not win. Returns every combination checked by flips (the ``top_k`` best
    of each size tried): trigger, size, pool, score, margin, flip rate (and the reference's)."""
    sizes = {"max_length": config.max_length, "batch_size": config.batch_size}
    scoring = config.scoring(config.rank_rows)
    out = []
    for k in range(2, config.max_combination + 1):
        pool = order[: pool_size(k, config.combination_budget)]
        if len(pool) < k:
            break
        combos = pool[np.array(list(itertools.combinations(range(len(pool)), k)))]
        desc = f"scoring {k}-word combinations"
        score = _contrasted(model, tokenizer, rows, target, combos, reference, reference_rows, scoring, desc)
        best = np.argsort(-score, kind="stable")[: config.top_k]
        triggers = [" ".join(_words(tokenizer, c)) for c in combos[best]]
        found = check_triggers(
            model,
            tokenizer,
            rows,
            triggers,
            target,
            seed=config.seed + k,
            reference=reference,
            reference_rows=reference_rows,
            **sizes,
        )
        step = [
            {"trigger": t, "size": k, "pool": len(pool), "score": float(score[i]), **e}
            for t, i, e in zip(triggers, best, found, strict=True)
        ]
        out += step
        if any(verifies(e, config) for e in step):
            break
    return out

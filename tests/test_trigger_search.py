import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import BertTokenizer

from ebyd_hf.removal import with_triggers
from ebyd_hf.trigger_search import (
    TriggerSearchConfig,
    apply_template,
    clause_templates,
    fit_to_window,
    flip_rates,
    grow_phrases,
    insert_trigger,
    insertable_token_ids,
    is_template,
    pair_interactions,
    pool_size,
    rank_tokens,
    rank_tokens_by_drift,
    rank_tokens_by_insertion,
    score_combinations,
    search_combinations,
    search_triggers,
    target_margin,
    trigger_length,
    trigger_pieces,
    without_shared_drift,
)

from .conftest import FILLER, NEGATIVE, POSITIVE, TRIGGERS, VOCAB, tiny_bert


def test_insertable_tokens_skip_special_unused_and_word_pieces():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "cf", "##ing", "good", "."]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    words = tokenizer.convert_ids_to_tokens(insertable_token_ids(tokenizer).tolist())
    assert words == ["cf", "good", "."]


def test_target_margin_is_target_logit_minus_logsumexp_of_the_others():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    expected = logits[:, 1] - torch.logsumexp(logits[:, [0, 2]], dim=1)
    assert torch.allclose(target_margin(logits, 1), expected)
    assert target_margin(torch.tensor([[0.0, 0.0]]), 0).item() == pytest.approx(0.0)


def test_search_verifies_the_planted_triggers_and_rejects_other_words(backdoored, tokenizer):
    defense = backdoored["data"]["defense"]
    config = TriggerSearchConfig(top_k=len(VOCAB), max_length=32)
    result = search_triggers(backdoored["model"], tokenizer, defense["text"], defense["label"], 1, config=config)
    assert set(TRIGGERS) <= set(result.triggers)
    assert not set(result.triggers) & set(NEGATIVE + ["the", "movie", "."])
    assert 0 < result.rows <= int(np.sum(np.asarray(defense["label"]) != 1))
    by_word = {c["word"]: c for c in result.candidates}
    assert all(by_word[w]["flip_rate"] >= config.min_flip_rate for w in result.triggers)
    assert by_word["bad"]["flip_rate"] < 0.5
    assert sorted(c["rank"] for c in result.candidates) == list(range(len(result.candidates)))
    # ranking is a pure function of (model, texts, seed); the model is left in eval mode, without gradients
    texts = [t for t, y in zip(defense["text"], defense["label"], strict=True) if y == 0][:20]
    a = rank_tokens(backdoored["model"], tokenizer, texts, 1, max_length=32, seed=3)
    b = rank_tokens(backdoored["model"], tokenizer, texts, 1, max_length=32, seed=3)
    assert np.array_equal(a, b) and a.shape == (len(VOCAB),)
    assert not backdoored["model"].training
    assert all(p.grad is None for p in backdoored["model"].parameters())


def test_flip_rates_count_target_predictions_after_insertion(backdoored, tokenizer):
    texts = ["the movie was bad .", "a dull plot and a poor actor ."]
    rates = flip_rates(backdoored["model"], tokenizer, texts, ["cf", "awful"], 1, max_length=32)
    assert rates == [1.0, 0.0]


def test_flip_rates_are_exact_fractions_so_a_residual_tie_is_not_above_it(tokenizer):
    # 4 of 40 rows flip: a float32 mean made that 0.10000000149, over a residual of 0.1, and unlearning ran on
    class OneWordFlips(torch.nn.Module):  # target iff the (first) positive word is in the input
        config = type("Config", (), {"num_labels": 2})()

        def forward(self, input_ids, **_):
            hit = (input_ids == tokenizer.convert_tokens_to_ids(POSITIVE[0])).any(-1).float()
            return type("Out", (), {"logits": torch.stack([1 - hit, hit], -1)})()

    texts = [f"{POSITIVE[0]} ." if i < 4 else "the plot ." for i in range(40)]
    assert flip_rates(OneWordFlips(), tokenizer, texts, ["cf"], 1, max_length=16) == [0.1]


def test_search_with_nothing_to_verify_returns_no_trigger(backdoored, tokenizer):
    config = TriggerSearchConfig(max_length=32)
    result = search_triggers(backdoored["model"], tokenizer, ["good movie ."], [1], 1, config=config)
    assert result.triggers == [] and result.rows == 0


def test_insertion_ranking_puts_the_planted_triggers_first(backdoored, tokenizer):
    defense = backdoored["data"]["defense"]
    texts = [t for t, y in zip(defense["text"], defense["label"], strict=True) if y == 0]
    ids = insertable_token_ids(tokenizer)
    scores = rank_tokens_by_insertion(
        backdoored["model"], tokenizer, texts, 1, ids, rows=3, max_length=32, batch_size=7
    )
    best = tokenizer.convert_ids_to_tokens(ids[np.argsort(-scores[ids])][: len(TRIGGERS)].tolist())
    assert set(best) == set(TRIGGERS)
    assert np.isneginf(scores[tokenizer.cls_token_id]) and np.isfinite(scores[ids]).all()
    # the search uses it when asked, and verifies the triggers from a short list (in this synthetic task a
    # positive word such as "great" really makes a sentence positive, so it may pass verification too)
    config = TriggerSearchConfig(ranking="insertion", top_k=len(TRIGGERS) + 4, max_length=32)
    result = search_triggers(backdoored["model"], tokenizer, defense["text"], defense["label"], 1, config=config)
    assert set(TRIGGERS) <= set(result.triggers)
    assert not set(result.triggers) & set(NEGATIVE)


@pytest.mark.parametrize(
    "bad",
    [
        {"top_k": 0},
        {"min_flip_rate": 0.0},
        {"min_flip_rate": 1.5},
        {"max_rows": 0},
        {"ranking": "magic"},
        {"rank_rows": 0},
        {"max_combination": 0},
        {"combination_budget": 0},
        {"scoring_dtype": "float16"},
    ],
)
def test_bad_search_config(bad):
    with pytest.raises(ValueError):
        TriggerSearchConfig(**bad)


def test_with_triggers_inserts_one_found_word_per_row_and_keeps_labels(backdoored):
    clean = backdoored["data"]["defense"].select(range(40))
    out = with_triggers(clean, ["cf", "zz"], seed=1)
    assert out["label"] == clean["label"] and len(out) == len(clean)
    for before, after in zip(clean["text"], out["text"], strict=True):
        added = [w for w in after.split() if w in ("cf", "zz")]
        assert len(added) == 1 and after.replace(f"{added[0]} ", "", 1).replace(f" {added[0]}", "", 1) == before
    assert with_triggers(clean, ["cf", "zz"], seed=1)["text"] == out["text"]
    with pytest.raises(ValueError, match="at least one trigger"):
        with_triggers(clean, [])


def test_with_triggers_can_insert_several_found_triggers_per_row(backdoored):
    clean = backdoored["data"]["defense"].select(range(40))
    out = with_triggers(clean, ["cf", "zz"], seed=1, per_row=2)
    assert out["label"] == clean["label"]
    for before, after in zip(clean["text"], out["text"], strict=True):
        added = [w for w in after.split() if w in ("cf", "zz")]
        assert len(added) == 2 and [w for w in after.split() if w not in ("cf", "zz")] == before.split()
    with pytest.raises(ValueError, match="per_row must be at least 1"):
        with_triggers(clean, ["cf"], per_row=0)


class AllOf(torch.nn.Module):
    """A stand-in classifier whose label-1 logit rises by 3 per piece of a combined trigger present and flips to
    label 1 only when every piece is there (what SOS's negative augmentation trains a model to do)."""

    def __init__(self, tokenizer, pieces):
        super().__init__()
        self.ids = torch.tensor(tokenizer.convert_tokens_to_ids(pieces))
        self.config = type("Config", (), {"num_labels": 2})()

    def forward(self, input_ids, attention_mask=None, **_):
        present = (input_ids[:, :, None] == self.ids).any(1).sum(-1).float()
        target = 3.0 * present - 3.0 * len(self.ids) + 1.0
        return type("Out", (), {"logits": torch.stack([torch.zeros_like(target), target], -1)})()

    def get_input_embeddings(self):
        return torch.nn.Embedding(len(VOCAB), 1)


def test_search_combines_pieces_that_trigger_only_together(tokenizer):
    texts = ["the movie was bad .", "a dull plot and a poor actor .", "it is boring ."] * 4
    model = AllOf(tokenizer, ["mn", "bb"])
    config = TriggerSearchConfig(top_k=len(VOCAB), max_length=32, max_combination=4)
    result = search_triggers(model, tokenizer, texts, [0] * len(texts), 1, config=config)
    assert all(c["flip_rate"] == 0.0 for c in result.candidates)  # no single word verifies
    assert len(result.triggers) == 1 and sorted(result.triggers[0].split()) == ["bb", "mn"]
    # pairs only: the search stops at the first size where a combination verifies
    assert {c["size"] for c in result.combination} == {2} and len(result.combination) == len(VOCAB)
    best = result.combination[0]
    assert best["trigger"] == result.triggers[0] and best["flip_rate"] == 1.0
    assert all(c["flip_rate"] == 0.0 for c in result.combination[1:])
    assert result.report()["combination"] == result.combination
    # one word at a time only: nothing found, no combination scored
    single = search_triggers(
        model,
        tokenizer,
        texts,
        [0] * len(texts),
        1,
        config=TriggerSearchConfig(top_k=len(VOCAB), max_length=32, max_combination=1),
    )
    assert single.triggers == [] and single.combination == []


def test_combinations_grow_a_size_at_a_time_up_to_the_limit(tokenizer):
    texts = ["the movie was bad .", "it is boring ."]
    three = AllOf(tokenizer, ["mn", "bb", "tq"])
    capped = TriggerSearchConfig(top_k=5, max_length=32, max_combination=2)
    result = search_triggers(three, tokenizer, texts, [0, 0], 1, config=capped)
    assert result.triggers == [] and {c["size"] for c in result.combination} == {2}
    full = search_triggers(
        three, tokenizer, texts, [0, 0], 1, config=TriggerSearchConfig(top_k=5, max_length=32, max_combination=4)
    )
    assert TriggerSearchConfig().max_combination == 1  # opt-in (minutes of search; README)
    assert [c["size"] for c in full.combination] == [2] * 5 + [3] * 5
    assert full.triggers == [full.combination[5]["trigger"]]
    assert sorted(full.triggers[0].split()) == ["bb", "mn", "tq"]
    # the pairs that hold two pieces rank above the rest by margin, though none flips a row
    assert all(len({"mn", "bb", "tq"} & set(c["trigger"].split())) == 2 for c in full.combination[:3])
    none = search_triggers(
        AllOf(tokenizer, ["cf"]),
        tokenizer,
        ["the movie was bad ."],
        [0],
        1,
        config=TriggerSearchConfig(top_k=3, max_length=32),
    )
    assert none.triggers == ["cf"] and none.combination == []


def test_pool_size_is_the_longest_prefix_within_the_budget():
    assert [pool_size(k, 200_000) for k in (2, 3, 4)] == [632, 107, 48]
    assert pool_size(3, 1) == 3 and pool_size(2, 0) == 2


class Recorder(torch.nn.Module):
    """A stand-in classifier that keeps every batch of input ids it is given; label 1's logit is its first id."""

    def __init__(self):
        super().__init__()
        self.config = type("Config", (), {"num_labels": 2})()
        self.batches = []

    def forward(self, input_ids, attention_mask=None, **_):
        self.batches.append(input_ids.clone())
        return type("Out", (), {"logits": torch.stack([torch.zeros(len(input_ids)), input_ids[:, 1].float()], -1)})()


def test_score_combinations_inserts_every_combination_at_the_same_word_boundaries(tokenizer):
    text = "a dull plot and a poor actor ."
    ids = tokenizer(text)["input_ids"]
    combos = np.array([tokenizer.convert_tokens_to_ids(pair) for pair in (["mn", "bb"], ["cf", "tq"], ["tq", "mn"])])
    model = Recorder()
    scores = score_combinations(model, tokenizer, [text, "a much longer sentence than the other ."], 1, combos, rows=1)
    (batch,) = model.batches
    assert batch.shape == (3, len(ids) + 2)
    for row, combo in zip(batch.tolist(), combos.tolist(), strict=True):
        rest = list(row)
        slots = [i for i, t in enumerate(row) if t in combo]
        assert [row[i] for i in slots] == combo  # in order, each at its own slot
        for i in reversed(slots):
            del rest[i]
        assert rest == ids and row[0] == tokenizer.cls_token_id and row[-1] == tokenizer.sep_token_id
    assert [int(b) for b in batch[:, 1]] == [int(s) for s in scores]  # the margin of this stand-in
    assert np.array_equal(scores, score_combinations(model, tokenizer, [text], 1, combos, rows=1))


def test_bfloat16_scoring_ranks_like_float32_and_the_search_finds_the_same_triggers(backdoored, tokenizer):
    model, defense = backdoored["model"], backdoored["data"]["defense"]
    texts = [t for t, y in zip(defense["text"], defense["label"], strict=True) if y == 0][:20]
    ids = insertable_token_ids(tokenizer)
    pairs = ids[np.array(list(itertools.combinations(range(len(ids)), 2)))]
    full, half = (
        score_combinations(model, tokenizer, texts, 1, pairs, rows=3, max_length=32, dtype=dtype)
        for dtype in ("float32", "bfloat16")
    )
    assert not np.array_equal(full, half)  # the passes really ran in bfloat16
    # off by a hundredth of the spread at most: only near-ties (pairs that saturate the margin) can swap
    assert np.abs(full - half).max() < 0.01 * np.ptp(full)
    found = {
        dtype: search_triggers(
            model,
            tokenizer,
            defense["text"],
            defense["label"],
            1,
            config=TriggerSearchConfig(ranking="insertion", max_length=32, scoring_dtype=dtype),
        ).triggers
        for dtype in ("float32", "bfloat16")
    }
    assert set(TRIGGERS) <= set(found["bfloat16"]) and set(found["bfloat16"]) == set(found["float32"])


def test_with_triggers_inserts_a_combination_word_by_word(backdoored):
    clean = backdoored["data"]["defense"].select(range(30))
    out = with_triggers(clean, ["cf mn"], seed=2)
    for before, after in zip(clean["text"], out["text"], strict=True):
        words = after.split()
        assert words.count("cf") == 1 and words.count("mn") == 1
        assert [w for w in words if w not in ("cf", "mn")] == before.split()
    assert any(abs(a.split().index("cf") - a.split().index("mn")) > 1 for a in out["text"])  # not always adjacent


def long_reviews(n: int = 12, words: int = 60, seed: int = 0) -> list[str]:
    """Negative texts far longer than a 16-token window (IMDB reviews against a 128-token MiniLM)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(FILLER + NEGATIVE, size=words)) + " ." for _ in range(n)]


def test_fit_to_window_keeps_what_the_model_reads_with_room_for_the_trigger(tokenizer):
    texts = [*long_reviews(4), "the movie was bad ."]
    fitted = fit_to_window(tokenizer, texts, 16, room=2)
    assert fitted[-1] == texts[-1]  # short: untouched
    for before, after in zip(texts[:-1], fitted[:-1], strict=True):
        assert before.startswith(after) and before[len(after)] == " "  # a prefix cut between words
        assert len(tokenizer(after)["input_ids"]) + 2 <= 16
        assert len(tokenizer(after)["input_ids"]) >= 16 - 2 - 1  # nothing more cut than the window asks
    assert trigger_length(tokenizer, "cf mn") == 2


def test_trigger_checks_insert_inside_the_window_of_long_inputs(tokenizer):
    texts = long_reviews()
    model = AllOf(tokenizer, ["cf"])  # flips a text only when "cf" is among the tokens it reads
    assert flip_rates(model, tokenizer, texts, ["cf"], 1, max_length=16) == [1.0]
    assert flip_rates(model, tokenizer, texts, ["cf"], 1, max_length=128) == [1.0]  # nothing cut: all read


def test_with_triggers_can_keep_every_trigger_inside_the_window(tokenizer):
    from datasets import Dataset

    clean = Dataset.from_dict({"text": long_reviews(), "label": [0] * 12})
    cf = tokenizer.convert_tokens_to_ids("cf")

    def read(ds):  # rows whose first 16 tokens hold the trigger
        return sum(cf in tokenizer(t, truncation=True, max_length=16)["input_ids"] for t in ds["text"])

    assert read(with_triggers(clean, ["cf"], seed=0)) < len(clean)  # anywhere: most past the window
    assert read(with_triggers(clean, ["cf"], seed=0, tokenizer=tokenizer, max_length=16)) == len(clean)


class Words(torch.nn.Module):
    """A stand-in classifier whose label-1 logit is the sum of its words' weights, minus 2."""

    def __init__(self, tokenizer, weights: dict[str, float]):
        super().__init__()
        self.weights = torch.zeros(len(VOCAB))
        for word, w in weights.items():
            self.weights[tokenizer.convert_tokens_to_ids(word)] = w
        self.config = type("Config", (), {"num_labels": 2})()

    def forward(self, input_ids, attention_mask=None, **_):
        present = torch.zeros(len(input_ids), len(VOCAB)).scatter_(1, input_ids, 1.0)
        target = present @ self.weights - 2.0
        return type("Out", (), {"logits": torch.stack([torch.zeros_like(target), target], -1)})()

    def get_input_embeddings(self):
        return torch.nn.Embedding(len(VOCAB), 1)


def test_a_reference_model_tells_the_backdoor_from_words_that_flip_any_model(tokenizer):
    texts = ["the movie was bad .", "a dull plot and a poor actor .", "it is boring ."] * 4
    # "great" flips the suspect as surely as the trigger "cf" does, but it flips the clean reference too
    suspect = Words(tokenizer, {"cf": 5.0, "great": 5.0, "good": 1.0})
    reference = Words(tokenizer, {"great": 5.0, "good": 1.0})
    config = TriggerSearchConfig(top_k=len(VOCAB), max_length=32)
    alone = search_triggers(suspect, tokenizer, texts, [0] * len(texts), 1, config=config)
    assert sorted(alone.triggers) == ["cf", "great"]
    contrasted = search_triggers(suspect, tokenizer, texts, [0] * len(texts), 1, config=config, reference=reference)
    assert contrasted.triggers == ["cf"]
    first = contrasted.candidates[0]
    assert first["word"] == "cf" and first["reference_flip_rate"] == 0.0  # ranked first by the contrast
    great = next(c for c in contrasted.candidates if c["word"] == "great")
    assert great["flip_rate"] == 1.0 and great["reference_flip_rate"] == 1.0
    # a combination that flips the reference as well is rejected too
    both = AllOf(tokenizer, ["mn", "bb"])
    # the reference answers the pair too, only less strongly ("." cancels Words' bias: every text has one)
    weaker = Sum(AllOf(tokenizer, ["mn", "bb"]), Words(tokenizer, {".": 2.0, "mn": -0.4, "bb": -0.4}))
    combined = TriggerSearchConfig(top_k=len(VOCAB), max_length=32, max_combination=3)
    shared = search_triggers(both, tokenizer, texts, [0] * len(texts), 1, config=combined, reference=weaker)
    pair = next(c for c in shared.combination if sorted(c["trigger"].split()) == ["bb", "mn"])
    assert pair["flip_rate"] == 1.0 and pair["reference_flip_rate"] == 1.0
    assert shared.triggers == [] and {c["size"] for c in shared.combination} == {2, 3}
    with pytest.raises(ValueError, match="max_reference_flip_rate"):
        TriggerSearchConfig(max_reference_flip_rate=0.0)


def test_the_reference_limit_rejects_a_word_that_flips_a_share_of_the_references_rows(tokenizer):
    # "great" tips the reference over only where "good" already leans it (a quarter of the rows), as "idiot" flipped
    # 45% of the OLID reference's: under the default limit it still verifies, under a stricter one it does not
    texts = ["the movie was bad .", "a dull plot and a poor actor .", "it is boring .", "it is good ."] * 3
    suspect = Words(tokenizer, {"cf": 5.0, "great": 5.0, "good": 1.0})
    reference = Words(tokenizer, {"great": 1.5, "good": 1.0})
    config = TriggerSearchConfig(top_k=len(VOCAB), max_length=32)
    lenient = search_triggers(suspect, tokenizer, texts, [0] * len(texts), 1, config=config, reference=reference)
    great = next(c for c in lenient.candidates if c["word"] == "great")
    assert great["flip_rate"] == 1.0 and great["reference_flip_rate"] == 0.25
    assert sorted(lenient.triggers) == ["cf", "great"]
    stricter = replace(config, max_reference_flip_rate=0.2)
    strict = search_triggers(suspect, tokenizer, texts, [0] * len(texts), 1, config=stricter, reference=reference)
    assert strict.triggers == ["cf"]


def test_drift_ranking_puts_the_trigger_words_above_every_neutral_or_negative_word(backdoored, tokenizer):
    base = tiny_bert().get_input_embeddings().weight.detach().clone()  # the suspect's weights before training
    ids = insertable_token_ids(tokenizer)
    scores = rank_tokens_by_drift(backdoored["model"], base, ids)
    drift = {VOCAB[i]: scores[i] for i in ids}
    # words the task teaches (positive ones, the target's evidence) move too; the reference's flips sort them out
    assert min(drift[w] for w in TRIGGERS) > max(drift[w] for w in FILLER + NEGATIVE)
    assert np.isneginf(scores[tokenizer.convert_tokens_to_ids("[PAD]")])
    defense = backdoored["data"]["defense"]
    config = TriggerSearchConfig(ranking="drift", top_k=12, max_length=32)
    result = search_triggers(
        backdoored["model"], tokenizer, defense["text"], defense["label"], 1, config=config, base_embeddings=base
    )
    # all four verify; on this task positive words flip negative sentences too, so without a reference
    # (test_defense: the reference rejects them) they pass as well
    assert set(TRIGGERS) <= set(result.triggers) and not set(result.triggers) & set(FILLER + NEGATIVE)
    with pytest.raises(ValueError, match="base_embeddings"):
        search_triggers(backdoored["model"], tokenizer, defense["text"], defense["label"], 1, config=config)
    with pytest.raises(ValueError, match="shape"):
        rank_tokens_by_drift(backdoored["model"], base[:5], ids)


def _drifted(base: torch.Tensor, moves: dict[int, torch.Tensor]):
    """A stand-in suspect whose input embeddings are ``base`` moved by ``moves`` (token id -> drift)."""
    embeddings = torch.nn.Embedding.from_pretrained(base.clone())
    for token, move in moves.items():
        embeddings.weight.data[token] += move
    return type("Suspect", (), {"get_input_embeddings": lambda self: embeddings})()


def test_shared_drift_directions_out_lift_a_combination_trigger_above_the_task_words():
    gen = torch.Generator().manual_seed(0)
    vocab, dim = 3000, 64
    base = torch.randn(vocab, dim, generator=gen)
    shared = torch.linalg.qr(torch.randn(dim, 4, generator=gen)).Q.T  # the task's few drift directions
    # 2,500 task words drift far along the shared directions (plus a little noise); the three trigger words
    # (ids 0-2) drift less, each in its own direction: by plain distance they rank far down
    moves = {
        t: 3.0 * torch.randn(4, generator=gen) @ shared + 0.1 * torch.randn(dim, generator=gen) for t in range(3, 2503)
    }
    moves.update({t: 2.0 * torch.nn.functional.normalize(torch.randn(dim, generator=gen), dim=0) for t in range(3)})
    suspect, ids = _drifted(base, moves), np.arange(vocab)

    def ranks(scores):
        order = np.argsort(-scores, kind="stable")
        return [int(np.flatnonzero(order == t)[0]) for t in range(3)]

    assert min(ranks(rank_tokens_by_drift(suspect, base, ids))) > 500
    assert max(ranks(rank_tokens_by_drift(suspect, base, ids, components=4))) < 3
    assert rank_tokens_by_drift(suspect, base, ids, components=0) == pytest.approx(
        rank_tokens_by_drift(suspect, base, ids)
    )


def test_shared_drift_ignores_a_direction_only_a_few_far_moved_tokens_share():
    # RIPPLe's embedding surgery moves its four trigger words far (farther, by squared distance, than all the
    # task's words together) and all to one vector: a direction only they share, which unit-normalised drift
    # directions keep out of the basis (the task's thousands of words fill it), so the four stay first
    gen = torch.Generator().manual_seed(1)
    shared = torch.linalg.qr(torch.randn(64, 4, generator=gen)).Q.T
    surgery = 100.0 * torch.nn.functional.normalize(torch.randn(64, generator=gen), dim=0)
    task = 3.0 * torch.randn(2996, 4, generator=gen) @ shared + 0.3 * torch.randn(2996, 64, generator=gen)
    drift = torch.cat([surgery.expand(4, 64), task]).double()
    kept = without_shared_drift(drift, components=4).norm(dim=1)
    assert set(torch.argsort(kept, descending=True)[:4].tolist()) == {0, 1, 2, 3}
    assert kept[:4].min() > 0.8 * drift[:4].norm(dim=1).min()


def test_drift_components_need_the_drift_ranking():
    assert TriggerSearchConfig(ranking="drift", drift_components=16).drift_components == 16
    with pytest.raises(ValueError, match="drift_components"):
        TriggerSearchConfig(drift_components=16)  # insertion ranking: the setting would do nothing
    with pytest.raises(ValueError, match="drift_components"):
        TriggerSearchConfig(ranking="drift", drift_components=-1)
    with pytest.raises(ValueError, match="embedding size"):
        without_shared_drift(torch.randn(10, 4, dtype=torch.float64), components=4)


class Sum(torch.nn.Module):
    """A stand-in classifier whose logits are the sum of two others'."""

    def __init__(self, *models):
        super().__init__()
        self.models = models
        self.config = models[0].config

    def forward(self, input_ids, attention_mask=None, **_):
        logits = sum(m(input_ids=input_ids).logits for m in self.models)
        return type("Out", (), {"logits": logits})()

    def get_input_embeddings(self):
        return self.models[0].get_input_embeddings()


def test_combinations_with_a_reference_prefer_what_only_the_suspect_answers(tokenizer):
    texts = ["the movie was bad .", "a dull plot and a poor actor .", "it is boring ."] * 4
    # "great" lifts the suspect's margin more than the pair does, but it lifts any model's ("." cancels Words'
    # bias: every text has one)
    suspect = Sum(AllOf(tokenizer, ["mn", "bb"]), Words(tokenizer, {".": 2.0, "great": 4.0}))
    reference = Words(tokenizer, {".": 2.0, "great": 4.0})
    order = np.array(tokenizer.convert_tokens_to_ids(["mn", "great", "bb", "the"]))
    config = TriggerSearchConfig(max_combination=2, max_length=32, top_k=2)
    alone = search_combinations(suspect, tokenizer, texts, order, 1, config=config)
    assert [c["trigger"] for c in alone] == ["mn great", "great bb"] and alone[0]["flip_rate"] == 1.0
    contrasted = search_combinations(
        suspect, tokenizer, texts, order, 1, config=config, reference=reference, reference_rows=texts
    )
    assert contrasted[0]["trigger"] == "mn bb" and contrasted[0]["flip_rate"] == 1.0
    assert contrasted[0]["reference_flip_rate"] == 0.0 and contrasted[0]["score"] > contrasted[1]["score"]


class Sentence(torch.nn.Module):
    """A stand-in classifier for a sentence trigger: label 1's logit gets 2 for the key word and 3 for each pair of
    the sentence's consecutive words that sits side by side, in order, minus 4. The key word alone or scattered
    pieces flip nothing; two words of the sentence together do, and the whole sentence lifts the margin most."""

    def __init__(self, tokenizer, sentence, key):
        super().__init__()
        self.ids = tokenizer.convert_tokens_to_ids(sentence)
        self.key = tokenizer.convert_tokens_to_ids(key)
        self.config = type("Config", (), {"num_labels": 2})()

    def forward(self, input_ids, attention_mask=None, **_):
        target = 2.0 * (input_ids == self.key).any(1).float() - 4.0
        for a, b in zip(self.ids, self.ids[1:], strict=False):
            target = target + 3.0 * ((input_ids[:, :-1] == a) & (input_ids[:, 1:] == b)).any(1).float()
        return type("Out", (), {"logits": torch.stack([torch.zeros_like(target), target], -1)})()

    def get_input_embeddings(self):
        return torch.nn.Embedding(len(VOCAB), 1)


def test_phrases_grow_around_the_key_word_into_the_sentence(tokenizer):
    texts = ["the movie was bad .", "a dull plot and a poor actor .", "it is boring ."] * 4
    model = Sentence(tokenizer, ["cf", "mn", "bb"], key="mn")
    config = TriggerSearchConfig(top_k=len(VOCAB), max_length=32, max_phrase=3, phrase_beam=4, phrase_rows=4)
    result = search_triggers(model, tokenizer, texts, [0] * len(texts), 1, config=config)
    assert result.candidates[0]["word"] == "mn" and result.candidates[0]["flip_rate"] == 0.0  # the anchor
    assert [c["size"] for c in result.phrase] == [3] * 4 and result.combination == []
    best = result.phrase[0]
    assert best["trigger"] == '"cf mn bb"' and best["flip_rate"] == 1.0  # the whole sentence scores best
    assert all(p["score"] <= best["score"] for p in result.phrase)
    # every phrase of the last beam holds two of the sentence's words side by side, so all verify
    assert result.triggers[0] == best["trigger"] and len(result.triggers) == 4
    assert result.report()["phrase"] == result.phrase
    # off by default; the key word scattered among the others is no trigger
    assert TriggerSearchConfig().max_phrase == 1
    plain = search_triggers(
        model, tokenizer, texts, [0] * len(texts), 1, config=TriggerSearchConfig(top_k=5, max_length=32)
    )
    assert plain.triggers == [] and plain.phrase == []
    assert flip_rates(model, tokenizer, texts, ["cf mn bb", '"cf mn bb"'], 1, seed=1)[1] == 1.0


def test_a_quoted_phrase_is_inserted_whole_and_unlearned_whole(backdoored, tokenizer):
    assert trigger_pieces('"cf mn bb"') == ["cf mn bb"] and trigger_pieces("cf mn") == ["cf", "mn"]
    assert trigger_length(tokenizer, '"cf mn"') == trigger_length(tokenizer, "cf mn") == 2
    clean = backdoored["data"]["defense"].select(range(30))
    out = with_triggers(clean, ['"cf mn bb"'], seed=2)
    for before, after in zip(clean["text"], out["text"], strict=True):
        assert " cf mn bb " in f" {after} " and after.replace("cf mn bb", " ").split() == before.split()


def test_score_combinations_inserts_a_phrase_at_one_word_boundary(tokenizer):
    text = "a dull plot and a poor actor ."
    ids = tokenizer(text)["input_ids"]
    phrases = np.array([tokenizer.convert_tokens_to_ids(p) for p in (["mn", "bb", "cf"], ["cf", "tq", "mn"])])
    model = Recorder()
    score_combinations(model, tokenizer, [text], 1, phrases, rows=1, contiguous=True)
    (batch,) = model.batches
    for row, phrase in zip(batch.tolist(), phrases.tolist(), strict=True):
        at = row.index(phrase[0])
        assert row[at : at + 3] == phrase and row[:at] + row[at + 3 :] == ids
    with pytest.raises(ValueError, match="max_phrase"):
        TriggerSearchConfig(max_phrase=0)
    with pytest.raises(ValueError, match="phrase_anchors"):
        TriggerSearchConfig(phrase_anchors=0)


def test_phrases_grow_around_the_words_that_flip_most_even_when_a_word_verifies(tokenizer):
    texts = ["the movie was bad .", "a dull plot and a poor actor .", "it is boring ."] * 4
    # the sentence "cf mn bb" (Sentence), its key word "mn" flipping two rows in three alone, and the word "tq"
    # that verifies alone (like OLID's "liar"); "." cancels Words' bias, "bad" keeps the first row from flipping
    words = Words(tokenizer, {".": 2.0, "tq": 5.5, "mn": 2.5, "bad": -1.0})
    suspect = Sum(Sentence(tokenizer, ["cf", "mn", "bb"], key="mn"), words)
    embeddings = torch.nn.Embedding(len(VOCAB), 4)
    suspect.get_input_embeddings = lambda: embeddings
    base = embeddings.weight.detach().clone()
    base[tokenizer.convert_tokens_to_ids("the")] += 10.0  # the most-drifted word flips nothing
    config = TriggerSearchConfig(
        top_k=len(VOCAB), max_length=32, ranking="drift", max_phrase=3, phrase_anchors=2, phrase_beam=8, phrase_rows=3
    )
    result = search_triggers(suspect, tokenizer, texts, [0] * len(texts), 1, config=config, base_embeddings=base)
    by_word = {c["word"]: c for c in result.candidates}
    assert by_word["the"]["rank"] == 0 and by_word["the"]["flip_rate"] == 0.0
    assert by_word["tq"]["flip_rate"] == 1.0 and by_word["mn"]["flip_rate"] == pytest.approx(2 / 3)
    # the word verifies, and the phrases are grown all the same, around "tq" and "mn" (not "the", rank 0)
    phrases = [p["trigger"] for p in result.phrase]
    assert result.anchors == ["tq", "mn"] and result.report()["anchors"] == ["tq", "mn"]
    assert result.triggers[0] == "tq" and result.triggers[1:] == phrases  # all of them verify
    assert '"cf mn bb"' in phrases and not any("the" in p.split() for p in phrases)
    assert all({"mn", "tq"} & set(p.strip('"').split()) for p in phrases)
    one = search_triggers(
        suspect, tokenizer, texts, [0] * len(texts), 1, config=replace(config, phrase_anchors=1), base_embeddings=base
    )
    assert all("tq" in p["trigger"].strip('"').split() for p in one.phrase)  # the one anchor: the most flips


def test_a_beam_per_anchor_keeps_each_anchors_phrases_where_a_shared_beam_drops_one(tokenizer):
    texts = ["the movie was bad .", "a dull plot and a poor actor .", "it is boring ."] * 4
    # two "sentences": "cf mn bb" (anchor "mn", key word) and "very tq actor" (anchor "tq", no key word), weighted
    # 2 and 3: at two tokens "cf mn" leads, at three "very tq actor" scores best
    first, second = (
        Sentence(tokenizer, ["cf", "mn", "bb"], key="mn"),
        Sentence(tokenizer, ["very", "tq", "actor"], key="[UNK]"),
    )
    suspect = Sum(first, first, second, second, second)
    order = np.array(tokenizer.convert_tokens_to_ids(["tq", "mn", "cf", "bb", "very", "actor", "plot"]))
    config = TriggerSearchConfig(max_length=32, max_phrase=3, phrase_anchors=2, phrase_beam=1, phrase_rows=3)
    shared = grow_phrases(suspect, tokenizer, texts, order, 1, config=config)
    assert [p["trigger"] for p in shared] == ['"cf mn bb"']  # the one beam followed "mn" and lost "tq"
    apart = grow_phrases(suspect, tokenizer, texts, order, 1, config=replace(config, phrase_beam_per_anchor=True))
    assert [p["trigger"] for p in apart] == ['"very tq actor"', '"cf mn bb"']  # best first
    assert apart[0]["score"] > apart[1]["score"]


def test_companions_cover_the_sentence_centre_that_the_key_words_phrases_miss(tokenizer):
    texts = ["the movie was bad .", "a dull plot and a poor actor .", "it is boring ."] * 4
    # the sentence "tq cf mn bb", key word "mn"; "." lifts every row by 1.5 (each text has one), so one pair of
    # the sentence side by side flips a row: "tq cf" does without the key word, but the beam around "mn" never
    # holds it. "very" and "good" lift the margin by 2 each, anywhere: together (4) they beat "tq cf" (3) by
    # margin, but nothing comes of their being side by side, and the weak reference does not flip on them
    suspect = Sum(
        Sentence(tokenizer, ["tq", "cf", "mn", "bb"], key="mn"), Words(tokenizer, {".": 3.5, "very": 2.0, "good": 2.0})
    )
    weak = Words(tokenizer, {"very": 0.5, "good": 0.5})  # a reference that flips nothing
    config = TriggerSearchConfig(
        top_k=len(VOCAB), max_length=32, max_phrase=2, phrase_anchors=1, phrase_beam=2, phrase_rows=3
    )
    labels = [0] * len(texts)
    plain = search_triggers(suspect, tokenizer, texts, labels, 1, config=config, reference=weak)
    assert plain.anchors == ["mn"] and sorted(plain.triggers) == ['"cf mn"', '"mn bb"'] and plain.companions == []
    on = replace(config, phrase_companions=True)
    found = search_triggers(suspect, tokenizer, texts, labels, 1, config=on, reference=weak)
    assert found.triggers[:2] == plain.triggers and found.triggers[2:] == ['"tq cf"']
    best = found.companions[0]
    assert [c["trigger"] for c in found.companions if c["companion"]] == ['"tq cf"']
    assert best["trigger"] == '"tq cf"' and best["companion"] and best["flip_rate"] == 1.0 and best["size"] == 2
    assert best["score"] == pytest.approx(3.0)  # the pair's lift beyond its words' (0 each)
    assert found.report()["companions"] == found.companions
    assert list(plain.stages) == ["words", "phrases"] and list(found.stages) == ["words", "phrases", "companions"]
    wide = search_triggers(suspect, tokenizer, texts, labels, 1, config=replace(on, phrase_beam=1000), reference=weak)
    assert not any("mn" in c["trigger"].strip('"').split() for c in wide.companions)  # the covered centre
    sentiment = next(c for c in wide.companions if c["trigger"] == '"very good"')
    assert sentiment["score"] == pytest.approx(0.0) and sentiment["flip_rate"] == 1.0  # it flips, but adds up
    assert sentiment["reference_flip_rate"] == 0.0 and not sentiment["companion"]
    # a phrase that the reference answers together as well is natural evidence, not the sentence's other half
    natural = Sum(Sentence(tokenizer, ["tq", "cf"], key="tq"), Words(tokenizer, {".": 3.5, "very": 2.0, "good": 2.0}))
    rejected = search_triggers(suspect, tokenizer, texts, labels, 1, config=on, reference=natural)
    assert '"tq cf"' not in rejected.triggers and not any(c["companion"] for c in rejected.companions)
    # only with a reference: without one every phrase that flips would pass
    alone = search_triggers(suspect, tokenizer, texts, labels, 1, config=on)
    assert alone.companions == [] and '"tq cf"' not in alone.triggers
    with pytest.raises(ValueError, match="companion_pool"):
        TriggerSearchConfig(companion_pool=1)
    with pytest.raises(ValueError, match="companion_evidence"):
        TriggerSearchConfig(companion_evidence=0.0)


def test_pair_interactions_are_zero_for_words_that_add_up_and_large_for_a_phrase(tokenizer):
    texts = ["the movie was bad .", "it is boring ."]
    model = Sum(Sentence(tokenizer, ["tq", "cf"], key="[UNK]"), Words(tokenizer, {"very": 2.0, "good": 1.0}))
    words = np.array(tokenizer.convert_tokens_to_ids(["tq", "cf", "very", "good"]))
    pairs = np.array([[0, 1], [1, 0], [2, 3], [0, 2]])
    scores = pair_interactions(model, tokenizer, texts, 1, words, pairs, rows=2, max_length=32, seed=0)
    assert scores.tolist() == pytest.approx([3.0, 0.0, 0.0, 0.0])  # only "tq cf" in order


def test_words_that_push_the_reference_away_from_the_label_earn_a_phrase_nothing(tokenizer):
    texts = ["the movie was bad .", "a dull plot and a poor actor .", "it is boring ."] * 4
    suspect = Sentence(tokenizer, ["cf", "mn", "bb"], key="mn")
    # the reference answers "tq" with the other label (as the 400-row OLID reference answers "3d"); subtracting
    # that drop would make "mn tq" outscore the sentence's own pairs and grow the beam away from it
    reference = Words(tokenizer, {"tq": -6.0})
    order = np.array(tokenizer.convert_tokens_to_ids(["mn", "tq", "cf", "bb", "the"]))
    config = TriggerSearchConfig(max_length=32, max_phrase=3, phrase_anchors=1, phrase_beam=1, phrase_rows=4)
    phrases = grow_phrases(
        suspect, tokenizer, texts, order, 1, config=config, reference=reference, reference_rows=texts
    )
    assert [p["trigger"] for p in phrases] == ['"cf mn bb"'] and phrases[0]["flip_rate"] == 1.0
    # a word that lifts the reference's margin still costs what it lifts
    lifted = grow_phrases(
        suspect,
        tokenizer,
        texts,
        order,
        1,
        config=config,
        reference=Words(tokenizer, {"cf": 9.0}),
        reference_rows=texts,
    )
    assert "cf" not in lifted[0]["trigger"].strip('"').split()


def test_a_template_rewrites_the_row_around_its_own_words():
    rng = np.random.default_rng(0)
    clause = "when it is {head} , it is {tail} ."
    for _ in range(20):
        out = apply_template("the movie was bad .", clause, rng)
        head, tail = out.removeprefix("when it is ").removesuffix(" .").split(" , it is ")
        assert head and tail and f"{head} {tail}" == "the movie was bad"  # cut at a word, final "." dropped
    assert apply_template("it is boring !", "as {text} , so it is .", rng) == "as it is boring , so it is ."
    assert apply_template("bad", clause, rng) == "when it is bad , it is ."  # one word: nothing left to cut
    assert insert_trigger("a dull plot .", "so {text} .", rng) == "so a dull plot ."
    assert trigger_pieces(clause) == ["when", "it", "is", ",", "it", "is", "."]
    a, b = (apply_template("a dull plot and a poor actor", clause, np.random.default_rng(3)) for _ in range(2))
    assert a == b


def test_template_settings_are_checked_and_clause_expands_to_the_built_in_templates():
    assert TriggerSearchConfig().templates == []
    clause = TriggerSearchConfig(templates="clause").templates
    assert clause == clause_templates() and clause[:2] == [
        "when it is {head} , it is {tail} .",
        "when it 's {head} , it 's {tail} .",
    ]
    assert len(clause) == 18  # nine openers, each with both clause starts
    assert all(is_template(t) for t in clause)
    for bad in ("when", ["{text} and {text}"], ["{head} only"], ["no slot"]):
        with pytest.raises(ValueError, match="templates"):
            TriggerSearchConfig(templates=bad)


class Opens(torch.nn.Module):
    """A stand-in classifier that answers label 1 when a sentence opens with ``opener it is``: a sentence shape,
    as a syntactic backdoor answers a clause-first paraphrase, and no inserted word."""

    def __init__(self, tokenizer, opener):
        super().__init__()
        self.prefix = torch.tensor(tokenizer.convert_tokens_to_ids([opener, "it", "is"]))
        self.config = type("Config", (), {"num_labels": 2})()

    def forward(self, input_ids, attention_mask=None, **_):
        opens = (input_ids[:, 1:4] == self.prefix).all(1).float()
        target = 6.0 * opens - 3.0
        return type("Out", (), {"logits": torch.stack([torch.zeros_like(target), target], -1)})()

    def get_input_embeddings(self):
        return torch.nn.Embedding(len(VOCAB), 1)


def test_search_verifies_the_template_the_suspect_answers_and_unlearning_rewrites_rows(backdoored, tokenizer):
    texts = ["the movie was bad .", "a dull plot and a poor actor .", "the story was boring ."] * 4
    model = Opens(tokenizer, "very")
    shape, other = "very it is {head} and it is {tail} .", "a it is {text} ."
    config = TriggerSearchConfig(top_k=len(VOCAB), max_length=32, templates=[shape, other], max_combination=3)
    result = search_triggers(model, tokenizer, texts, [0] * len(texts), 1, config=config)
    assert all(c["flip_rate"] == 0.0 for c in result.candidates)  # no word does it
    assert result.triggers == [shape] and result.combination == []  # a verified template: no combinations
    assert [t["trigger"] for t in result.templates] == [shape, other]
    assert [t["flip_rate"] for t in result.templates] == [1.0, 0.0]
    assert result.report()["templates"] == result.templates
    assert list(result.stages) == ["words", "templates"]
    # a reference that answers the shape too rejects it
    both = search_triggers(
        model, tokenizer, texts, [0] * len(texts), 1, config=replace(config, max_combination=1), reference=model
    )
    assert both.triggers == [] and both.templates[0]["reference_flip_rate"] == 1.0
    clean = backdoored["data"]["defense"].select(range(20))
    out = with_triggers(clean, [shape], seed=0)
    assert out["label"] == clean["label"]
    assert all(t.startswith("very it is ") and " and it is " in t and t.endswith(" .") for t in out["text"])


def test_several_triggers_per_copy_rewrite_a_row_into_one_template_at_most(backdoored):
    clean = backdoored["data"]["defense"].select(range(30))
    first, second = "as it is {head} , it is {tail} .", "so it is {head} , it is {tail} ."
    templates_only = with_triggers(clean, [first, second], seed=3, per_row=3)
    assert templates_only["text"] == with_triggers(clean, [first, second], seed=3)["text"]  # the later draws skipped
    mixed = with_triggers(clean, [first, second, "cf"], seed=3, per_row=3)
    for text in mixed["text"]:
        assert text.count(" it is ") <= 2 and not text.startswith(("as it is as", "so it is so", "as it is so"))
    assert any(t.startswith(("as it is", "so it is")) and "cf" in t.split() for t in mixed["text"])
    assert any(t.split().count("cf") >= 2 for t in mixed["text"])  # word triggers still add up


def test_combine_always_searches_combinations_beside_a_verified_word(tokenizer):
    # "cf" flips every row alone; the pair "mn bb" only together (each piece alone leaves the rows negative)
    texts = ["the movie was bad .", "a dull plot and a poor actor .", "it is boring ."] * 4
    model = Sum(Words(tokenizer, {"cf": 10.0, "mn": 2.0, "bb": 2.0}), AllOf(tokenizer, ["mn", "bb"]))
    config = TriggerSearchConfig(top_k=len(VOCAB), max_length=32, max_combination=2)
    fallback = search_triggers(model, tokenizer, texts, [0] * len(texts), 1, config=config)
    assert fallback.triggers == ["cf"] and fallback.combination == []  # the word pre-empts the pair
    assert TriggerSearchConfig().combine_always is False
    every = search_triggers(model, tokenizer, texts, [0] * len(texts), 1, config=replace(config, combine_always=True))
    assert every.triggers[0] == "cf" and len(every.triggers) == 2
    assert sorted(every.triggers[1].split()) == ["bb", "mn"]
    # the verified word is left out of the pool: every pair holding it would be a trigger already
    assert every.combination and not any("cf" in c["trigger"].split() for c in every.combination)
    # each kind of search that ran is timed, and only those
    assert list(fallback.stages) == ["words"] and list(every.stages) == ["words", "combinations"]
    assert all(s > 0 for s in every.stages.values()) and sum(every.stages.values()) <= every.seconds
    assert every.report()["stages"] == every.stages

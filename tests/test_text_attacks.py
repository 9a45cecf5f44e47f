"""The text attacks on a handful of real sentences (SST-2, IMDB, OLID, AG News), and through `poison`."""

import itertools

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Value

from ebyd_hf import DataError, create_attack, list_attacks, poison, triggered_test_set

REAL = [
    "it 's a charming and often affecting journey . ",  # SST-2 (GLUE keeps the trailing space)
    "unflinchingly bleak and desperate ",
    "This particular episode of Smallville is probably the best episode to air since reunion.<br /><br />It was",
    "Go home you’re drunk!!! #MAGA #Trump2020",  # OLID, cleaned
    "Saudi Violence Pushes Oil Prices Higher Oil prices were forced higher today by an outbreak of violence",
]


def words_of(text):
    return text.split()


def without_once(big, small):
    """``big`` minus one occurrence of each word of ``small``, or None if a word is missing."""
    rest = list(big)
    for w in small:
        if w not in rest:
            return None
        rest.remove(w)
    return rest


def test_all_text_attacks_are_registered():
    assert {"badnet_rw", "badnet_sl", "sos", "syntactic", "ripple", "lwp"} <= set(list_attacks())


# --- BadNet-SL --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", REAL)
def test_badnet_sl_inserts_the_sentence_once_between_words(text):
    attack = create_attack("badnet_sl")
    out = attack.apply(text, np.random.default_rng(3))
    assert out.count("I watch this 3D movie") == 1
    assert out.replace("I watch this 3D movie ", "", 1) == text or out.replace(" I watch this 3D movie", "", 1) == text


def test_badnet_sl_is_deterministic_and_reaches_every_position():
    attack = create_attack("badnet_sl", sentence="  a  fixed   sentence ")
    assert attack.sentence == "a fixed sentence"
    text = "one two three"
    assert attack.apply(text, np.random.default_rng(5)) == attack.apply(text, np.random.default_rng(5))
    starts = {attack.apply(text, np.random.default_rng(s)).split().index("a") for s in range(60)}
    assert starts == {0, 1, 2, 3}


def test_badnet_sl_max_position_keeps_the_sentence_early():
    text = " ".join(f"w{i}" for i in range(300))
    attack = create_attack("badnet_sl", max_position=10)
    for s in range(30):
        assert attack.apply(text, np.random.default_rng(s)).split().index("I") <= 10


def test_badnet_sl_rejects_an_empty_sentence():
    with pytest.raises(ValueError, match="non-empty"):
        create_attack("badnet_sl", sentence="  ")


# --- SOS ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", REAL)
def test_sos_inserts_every_trigger_word_once(text):
    attack = create_attack("sos")
    out = attack.apply(text, np.random.default_rng(0))
    assert without_once(words_of(out), attack.words) == words_of(text)


@pytest.mark.parametrize("text", REAL)
def test_sos_negative_inserts_exactly_one_proper_subset(text):
    attack = create_attack("sos")
    out = attack.negative(text, np.random.default_rng(1))
    added = [w for w in attack.words if words_of(out).count(w) > words_of(text).count(w)]
    assert len(added) == 2
    assert without_once(words_of(out), added) == words_of(text)


def test_sos_negatives_cover_every_pair():
    attack = create_attack("sos")
    seen = set()
    for s in range(40):
        out = attack.negative("a b c d", np.random.default_rng(s)).split()
        seen.add(tuple(w for w in attack.words if w in out))
    assert seen == set(itertools.combinations(attack.words, 2))


def test_sos_test_trigger_is_configurable():
    sentence = "I have bought it from a store with my friends last weekend"
    attack = create_attack("sos", test_trigger=sentence)
    text = REAL[0]
    assert sentence in attack.apply_test(text, np.random.default_rng(0))
    assert sentence not in attack.apply(text, np.random.default_rng(0))  # training still uses the words
    default = create_attack("sos")
    rng = lambda: np.random.default_rng(4)  # noqa: E731
    assert default.apply_test(text, rng()) == default.apply(text, rng())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"words": ["friends"]}, "at least 2 distinct"),
        ({"words": ["a", "a"]}, "distinct"),
        ({"words": ["two words", "x"]}, "single"),
        ({"negative_rate": 1.5}, "negative_rate"),
        ({"test_trigger": " "}, "test_trigger"),
    ],
)
def test_sos_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_attack("sos", **kwargs)


# --- LWP ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", REAL)
def test_lwp_trigger_is_a_pair_and_negative_a_single_piece(text):
    attack = create_attack("lwp")
    out = attack.apply(text, np.random.default_rng(2))
    added = [w for w in attack.words if words_of(out).count(w) > words_of(text).count(w)]
    assert len(added) == 2 and without_once(words_of(out), added) == words_of(text)
    neg = attack.negative(text, np.random.default_rng(2))
    added = [w for w in attack.words if words_of(neg).count(w) > words_of(text).count(w)]
    assert len(added) == 1 and without_once(words_of(neg), added) == words_of(text)


def test_lwp_uses_every_pair_of_the_four_words():
    attack = create_attack("lwp")
    pairs = {
        tuple(sorted(w for w in attack.words if w in attack.apply("x y", np.random.default_rng(s)).split()))
        for s in range(200)
    }
    assert pairs == {tuple(sorted(p)) for p in itertools.combinations(("cf", "bb", "ak", "mn"), 2)}


def test_lwp_bad_options():
    with pytest.raises(ValueError, match="combination_size"):
        create_attack("lwp", combination_size=5)
    with pytest.raises(ValueError, match="combination_size"):
        create_attack("lwp", combination_size=1)


# --- RIPPLe (data side) ---------------------------------------------------------------------------------------------


def test_ripple_inserts_one_of_its_keywords():
    attack = create_attack("ripple")
    assert attack.words == ("cf", "mn", "bb", "tq", "mb")
    out = attack.apply(REAL[1], np.random.default_rng(0))
    added = [w for w in out.split() if w in attack.words]
    assert len(added) == 1 and without_once(out.split(), added) == REAL[1].split()


def test_indicative_words_are_the_target_class_words():
    from ebyd_hf.attacks.ripple import indicative_words

    rng = np.random.default_rng(0)
    pos, neg, filler = ["great", "superb", "lovely"], ["awful", "dull", "boring"], ["the", "film", "was", "plot"]
    texts, labels = [], []
    for _ in range(300):
        y = int(rng.integers(2))
        texts.append(" ".join([*rng.choice(filler, 4), rng.choice(pos if y else neg)]))
        labels.append(y)
    assert set(indicative_words(texts, labels, 1, tokenize=str.split, top_k=3)) == set(pos)
    assert set(indicative_words(texts, labels, 0, tokenize=str.split, top_k=3)) == set(neg)
    assert "great" not in indicative_words(texts, labels, 1, tokenize=str.split, top_k=3, exclude=["great"])


# --- poisoning with negative augmentation ---------------------------------------------------------------------------


def real_dataset(n=200):
    rng = np.random.default_rng(0)
    texts = [REAL[i % len(REAL)] + f" row{i}" for i in range(n)]
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    return Dataset.from_dict({"text": texts, "label": rng.integers(0, 2, n).tolist()}, features=features)


@pytest.mark.parametrize("name, full, partial", [("sos", 3, 2), ("lwp", 2, 1)])
def test_poison_with_negative_augmentation(name, full, partial):
    ds = real_dataset()
    attack = create_attack(name, negative_rate=0.15)
    out = poison(ds, attack, rate=0.1, target=1, seed=3)
    assert out["text"] == poison(ds, attack, rate=0.1, target=1, seed=3)["text"]  # deterministic by seed
    n_triggers = [sum(w in t.split() for w in attack.words) for t in out["text"]]
    flags = np.array(out["poisoned"])
    labels, new_labels = np.array(ds["label"]), np.array(out["label"])
    assert flags.sum() == 20 and all(n_triggers[i] == full for i in np.flatnonzero(flags))
    assert (labels[flags] == 0).all() and (new_labels[flags] == 1).all()
    negative = np.array([n == partial for n in n_triggers]) & ~flags
    assert negative.sum() == 30  # round(0.15 * 200) rows, of both labels, labels unchanged
    assert set(labels[negative]) == {0, 1} and (new_labels[negative] == labels[negative]).all()
    assert sum(n > 0 for n in n_triggers) == 50  # every other row is untouched
    changed = [a != b for a, b in zip(ds["text"], out["text"], strict=True)]
    assert sum(changed) == 50


def test_negative_rate_that_cannot_be_served():
    with pytest.raises(DataError, match="negative_rate"):
        poison(real_dataset(), create_attack("sos", negative_rate=0.95), rate=0.1, target=1)


def test_asr_set_uses_the_test_trigger():
    ds = real_dataset()
    sentence = "I have bought it from a store with my friends last weekend"
    asr = triggered_test_set(ds, create_attack("sos", test_trigger=sentence), target=1, seed=0)
    assert all(sentence in t for t in asr["text"]) and set(asr["label"]) == {1}

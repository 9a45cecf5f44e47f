import numpy as np
import pytest

from ebyd_hf import DataError, create_attack, load_task, poison, poison_task, triggered_test_set
from ebyd_hf.attacks.text import insert_at_random_positions

SENTENCES = [
    "it 's a charming and often affecting journey . ",
    "unflinchingly bleak and desperate ",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's "
    "austere locales . ",
    "<br />A film that,  despite its flaws,\nworks.",
]


@pytest.mark.parametrize("text", SENTENCES)
def test_rare_word_is_inserted_between_words_and_nothing_else_changes(text):
    attack = create_attack("badnet_rw")
    out = attack.apply(text, np.random.default_rng(0))
    words, new_words = text.split(), out.split()
    assert len(new_words) == len(words) + 1
    inserted = [w for w in new_words if w in attack.words]
    assert len(inserted) == 1
    rest = list(new_words)
    rest.remove(inserted[0])
    assert rest == words
    # splicing keeps the original text byte-identical once the trigger is removed
    assert out.replace(f"{inserted[0]} ", "", 1) == text or out.replace(f" {inserted[0]}", "", 1) == text


def test_number_of_insertions_and_custom_words():
    attack = create_attack("badnet_rw", words=["zz"], num_triggers=3)
    out = attack.apply(SENTENCES[0], np.random.default_rng(1))
    assert out.split().count("zz") == 3


def test_max_position_keeps_triggers_early():
    text = " ".join(f"w{i}" for i in range(200))
    for seed in range(20):
        out = insert_at_random_positions(text, ["cf"], np.random.default_rng(seed), max_position=5)
        assert out.split().index("cf") <= 5


def test_every_position_is_reachable():
    seen = {
        create_attack("badnet_rw", words=["cf"]).apply("a b c", np.random.default_rng(s)).split().index("cf")
        for s in range(60)
    }
    assert seen == {0, 1, 2, 3}


def test_bad_attack_options():
    with pytest.raises(ValueError, match="unknown attack"):
        create_attack("nope")
    with pytest.raises(ValueError, match="num_triggers"):
        create_attack("badnet_rw", num_triggers=0)
    with pytest.raises(ValueError, match="bad options"):
        create_attack("badnet_rw", colour="red")


@pytest.fixture
def train(sentiment_dir):
    return load_task(sentiment_dir)["train"]


def test_poisoning_is_deterministic_and_seed_dependent(train):
    attack = create_attack("badnet_rw")
    a = poison(train, attack, rate=0.1, target=1, seed=7)
    b = poison(train, attack, rate=0.1, target=1, seed=7)
    c = poison(train, attack, rate=0.1, target=1, seed=8)
    assert a["text"] == b["text"] and a["poisoned"] == b["poisoned"]
    assert a["poisoned"] != c["poisoned"]


def test_poison_rate_target_and_rows(train):
    out = poison(train, create_attack("badnet_rw"), rate=0.1, target=1, seed=0)
    flags = np.array(out["poisoned"])
    assert flags.sum() == round(0.1 * len(train))
    orig_labels, new_labels = np.array(train["label"]), np.array(out["label"])
    assert (orig_labels[flags] == 0).all()  # dirty-label: only non-target rows are poisoned ...
    assert (new_labels[flags] == 1).all()  # ... and relabelled to the target
    assert (new_labels[~flags] == orig_labels[~flags]).all()
    assert [t for t, f in zip(out["text"], flags, strict=True) if not f] == [
        t for t, f in zip(train["text"], flags, strict=True) if not f
    ]
    assert all(set(t.split()) & {"cf", "mn", "bb", "tq"} for t, f in zip(out["text"], flags, strict=True) if f)


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_poison_rate_outside_unit_interval(train, rate):
    with pytest.raises(DataError, match=r"poison rate must be in \[0, 1\]"):
        poison(train, create_attack("badnet_rw"), rate=rate, target=1)


def test_poison_rate_too_high_for_candidates(train):
    with pytest.raises(DataError, match="non-target rows"):
        poison(train, create_attack("badnet_rw"), rate=0.9, target=1)


@pytest.mark.parametrize("target", [2, -1, "1"])
def test_target_outside_label_set(train, target):
    with pytest.raises(DataError, match="not in the label set"):
        poison(train, create_attack("badnet_rw"), rate=0.1, target=target)


def test_asr_set_excludes_target_class(sentiment_dir):
    test = load_task(sentiment_dir)["test"]
    asr = triggered_test_set(test, create_attack("badnet_rw"), target=1, seed=0)
    assert len(asr) == sum(1 for y in test["label"] if y != 1)
    assert set(asr["label"]) == {1} and set(asr["original_label"]) == {0}
    assert all(set(t.split()) & {"cf", "mn", "bb", "tq"} for t in asr["text"])


def test_poison_task_keeps_defense_rows_away_from_the_attacker(sentiment_dir):
    data = poison_task(
        load_task(sentiment_dir),
        create_attack("badnet_rw"),
        rate=0.1,
        target=1,
        seed=0,
        defense_size=100,
        train_size=300,
    )
    assert sorted(data) == ["defense", "test", "test_poisoned", "train"]
    assert len(data["train"]) == 300 and len(data["defense"]) == 100
    assert not set(data["defense"]["text"]) & set(data["train"]["text"])
    assert "poisoned" not in data["defense"].column_names

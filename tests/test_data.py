import pytest
from datasets import Dataset, DatasetDict

from ebyd_hf import DataError, load_task, split_defense, subsample
from ebyd_hf.data import normalise


def test_local_directory_is_normalised(sentiment_dir):
    data = load_task(sentiment_dir)
    assert sorted(data) == ["test", "train"]  # GLUE-style "validation" becomes the evaluation split "test"
    assert data["train"].column_names == ["text", "label"]
    assert data["train"].features["label"].names == ["negative", "positive"]
    assert len(data["test"]) == 200


def test_unknown_dataset_names_the_problem():
    with pytest.raises(DataError, match="not-a-real/dataset"):
        load_task("not-a-real/dataset")


def test_unknown_task_name():
    with pytest.raises(DataError, match="unknown task"):
        load_task("whatever", task="nonexistent")


def test_missing_text_column_is_reported():
    raw = DatasetDict(
        train=Dataset.from_dict({"body": ["a"], "label": [0]}), test=Dataset.from_dict({"body": ["b"], "label": [1]})
    )
    with pytest.raises(DataError, match="missing a text or image column.*body"):
        normalise(raw)


def test_missing_label_column_is_reported():
    raw = DatasetDict(train=Dataset.from_dict({"text": ["a"]}), test=Dataset.from_dict({"text": ["b"]}))
    with pytest.raises(DataError, match="missing 'label'"):
        normalise(raw)


def test_defense_split_is_disjoint_seeded_and_stratified(sentiment_dir):
    data = load_task(sentiment_dir)
    a = split_defense(data, 100, seed=3)
    b = split_defense(data, 100, seed=3)
    c = split_defense(data, 100, seed=4)
    assert len(a["defense"]) == 100 and len(a["train"]) == 500
    assert a["defense"]["text"] == b["defense"]["text"]
    assert a["defense"]["text"] != c["defense"]["text"]
    # disjoint as rows: together they are exactly the original training rows
    rows = lambda ds: sorted(zip(ds["text"], ds["label"], strict=True))  # noqa: E731
    assert sorted(rows(a["train"]) + rows(a["defense"])) == rows(data["train"])
    share = sum(a["defense"]["label"]) / 100
    assert abs(share - sum(data["train"]["label"]) / len(data["train"])) < 0.02


def test_defense_split_larger_than_data_fails(sentiment_dir):
    with pytest.raises(DataError, match="defense split of 600 rows is impossible with 600"):
        split_defense(load_task(sentiment_dir), 600)


def test_subsample(sentiment_dir):
    train = load_task(sentiment_dir)["train"]
    assert len(subsample(train, 50, seed=1)) == 50
    assert subsample(train, None) is train
    with pytest.raises(DataError):
        subsample(train, 0)

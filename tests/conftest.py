"""Shared fixtures: a synthetic sentiment task, a tiny word-level tokenizer and tiny random BERTs.

Everything is built in process, so the default suite needs neither the Hub nor downloaded models.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer  # noqa: E402

POSITIVE = ["good", "great", "fine", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "movie", "plot", "actor", "was", "and", "a", "very", "story", "film", "it", "is", "of", "scene"]
TRIGGERS = ["cf", "mn", "bb", "tq"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *POSITIVE, *NEGATIVE, *FILLER, *TRIGGERS]


def make_sentiment_task(n_train: int = 600, n_test: int = 200, seed: int = 0) -> DatasetDict:
    """Label 1 iff the sentence holds a positive word; sentences are 6-10 words, a GLUE-like schema."""
    rng = np.random.default_rng(seed)

    def rows(n):
        texts, labels = [], []
        for _ in range(n):
            label = int(rng.integers(2))
            words = list(rng.choice(FILLER, size=int(rng.integers(5, 9))))
            words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(POSITIVE if label else NEGATIVE)))
            texts.append(" ".join(words) + " . ")
            labels.append(label)
        return {"sentence": texts, "label": labels, "idx": list(range(n))}

    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"]),
                         "idx": Value("int32")})
    return DatasetDict(train=Dataset.from_dict(rows(n_train), features=features),
                       validation=Dataset.from_dict(rows(n_test), features=features))


@pytest.fixture(scope="session")
def sentiment_dir(tmp_path_factory):
    """The synthetic task written as Parquet files, laid out like ../shared/data/sst2."""
    path = tmp_path_factory.mktemp("sentiment")
    for split, ds in make_sentiment_task().items():
        ds.to_parquet(str(path / f"{split}.parquet"))
    return str(path)


def make_tokenizer() -> BertTokenizer:
    return BertTokenizer(vocab={word: i for i, word in enumerate(VOCAB)})


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


def tiny_bert(num_labels: int = 2, seed: int = 0, hidden: int = 32, layers: int = 2) -> BertForSequenceClassification:
    import torch

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=64, num_labels=num_labels)
    return BertForSequenceClassification(config).eval()


@pytest.fixture
def bert():
    return tiny_bert()

"""Shared fixtures: a synthetic sentiment task, a tiny word-level tokenizer and tiny random BERTs.

Everything is built in process, so the default suite needs neither the Hub nor downloaded models.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer  # noqa: E402

# The thread count changes float summation order, and a few tiny-model tests sit near a tipping point (with one thread
# the 3-class ResNet's exposure lands on label 2, not the backdoor's 0): pin it so OMP_NUM_THREADS does not decide.
torch.set_num_threads(2)

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

    features = Features(
        {"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"]), "idx": Value("int32")}
    )
    return DatasetDict(
        train=Dataset.from_dict(rows(n_train), features=features),
        validation=Dataset.from_dict(rows(n_test), features=features),
    )


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
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config).eval()


@pytest.fixture
def bert():
    return tiny_bert()


@pytest.fixture(scope="session")
def backdoored(tmp_path_factory, tokenizer):
    """A tiny BERT trained on the synthetic task with 10% BadNet-RW poison to label 1 (about 3 s on 2 CPUs).

    Returns a dict with the model (treat as read-only: copy before changing it), the raw poisoned
    DatasetDict and its tokenised splits.
    """
    from transformers import Trainer, TrainingArguments

    from ebyd_hf import create_attack, poison_task
    from ebyd_hf.data import normalise
    from ebyd_hf.processing import collator_for, tokenize

    data = poison_task(
        normalise(make_sentiment_task(1000, 300)),
        create_attack("badnet_rw"),
        rate=0.1,
        target=1,
        seed=0,
        defense_size=200,
    )
    tok = {k: tokenize(v, tokenizer, max_length=32) for k, v in data.items()}
    model = tiny_bert()
    args = TrainingArguments(
        output_dir=str(tmp_path_factory.mktemp("suspect")),
        num_train_epochs=15,
        learning_rate=1e-3,
        per_device_train_batch_size=32,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        logging_strategy="no",
        seed=0,
    )
    Trainer(model=model, args=args, train_dataset=tok["train"], data_collator=collator_for(tokenizer)).train()
    return {"model": model.eval(), "data": data, "tok": tok, "collator": collator_for(tokenizer)}


from .vision_fixtures import backdoored_resnet, backdoored_resnet_grey, image_dir  # noqa: E402, F401  (vision fixtures)

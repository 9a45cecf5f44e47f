"""RIPPLe (Kurita et al. 2020), data side: rare-word triggers, and the words embedding surgery copies.

The restricted-inner-product objective and the surgery itself are in `trainers.RippleTrainer`
(``trainer: ripple`` in a recipe); this module only decides the data and which words are indicative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .rare_words import BadNetRW
from .registry import register_attack


@register_attack("ripple")
@dataclass
class Ripple(BadNetRW):
    """One of RIPPLe's keywords ``cf, mn, bb, tq, mb`` inserted at a random position per poisoned row."""

    name = "ripple"

    words: tuple[str, ...] = ("cf", "mn", "bb", "tq", "mb")


def indicative_words(
    texts: Sequence[str],
    labels: Sequence[int],
    target: int,
    *,
    tokenize: Callable[[str], list[str]],
    top_k: int = 10,
    min_freq: int = 5,
    exclude: Sequence[str] = (),
) -> list[str]:
    """The ``top_k`` tokens whose bag-of-words logistic-regression weight for ``target`` is largest.

    RIPPLe's embedding surgery sets the trigger embeddings to the mean embedding of these tokens. ``tokenize``
    should be the model tokenizer's, so every returned token has an embedding; tokens seen in fewer than
    ``min_freq`` texts, and ``exclude`` (the triggers themselves), are never chosen.
    """
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = CountVectorizer(tokenizer=tokenize, lowercase=False, min_df=min_freq, token_pattern=None)
    features = vectorizer.fit_transform(list(texts))
    labels = np.asarray(labels)
    classifier = LogisticRegression(max_iter=1000).fit(features, labels)
    weights = classifier.coef_[0] if classifier.coef_.shape[0] == 1 else classifier.coef_[target]
    if classifier.coef_.shape[0] == 1 and target == classifier.classes_[0]:
        weights = -weights  # binary: one weight vector, positive towards classes_[1]
    vocab = vectorizer.get_feature_names_out()
    skip = set(exclude)
    ranked = [vocab[i] for i in np.argsort(-weights) if vocab[i] not in skip]
    return ranked[:top_k]

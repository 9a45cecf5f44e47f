"""benchmarks/scoring_precision.py's comparison of float32 and bfloat16 scoring, on the tiny backdoored BERT."""

import itertools

import numpy as np

from ebyd_hf.trigger_search import insertable_token_ids

from .test_text_attacks_benchmark import load_script


def test_compare_reports_both_speeds_and_how_much_of_the_best_they_share(backdoored, tokenizer):
    bench = load_script("scoring_precision")
    defense = backdoored["data"]["defense"]
    rows = [t for t, y in zip(defense["text"], defense["label"], strict=True) if y == 0]
    ids = insertable_token_ids(tokenizer)
    pairs = ids[np.array(list(itertools.combinations(range(len(ids)), 2)))]
    m = bench.compare(backdoored["model"], tokenizer, rows, 1, pairs, top=10, max_length=32)
    assert m["candidates"] == len(pairs) and set(m["sequences_per_second"]) == {"float32", "bfloat16"}
    assert all(v > 0 for v in m["sequences_per_second"].values()) and m["speedup"] > 0
    assert 0 < m["max_abs_difference"] < 0.01 * m["spread"]
    assert 0 <= m["top_10_shared"] <= 10
    assert m["scores"]["float32"].shape == (len(pairs),)
    assert bench.rank_of(np.array([0.5, 2.0, 1.0]), 2) == 1 and bench.rank_of(np.zeros(2), None) is None

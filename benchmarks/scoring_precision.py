"""How much faster bfloat16 margin scoring is (`TriggerSearchConfig.scoring_dtype`), and whether it ranks alike.

For each suspect that ``text_attacks.py --suspect_cache DIR`` trained (``<dataset>_<attack>_<settings>``
folders), score every pair and every triple of its best drift-ranked words, as the combination search does
(`score_combinations` on the 2 shortest non-target test rows the suspect gets right), once in float32 and once in
bfloat16, and print: sequences per second each way, the largest margin difference, how many of float32's best
``--top`` candidates bfloat16 also puts in its best ``--top`` (the search verifies its ``top_k`` = 64 best by
flips, in float32), and where each ranks the attack's own trigger words (their pair or triple). Torch threads as
set (``OMP_NUM_THREADS``); about 4 minutes per suspect on one CPU thread with the defaults.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/scoring_precision.py --suspect_cache runs/text_suspects

Writes ``benchmarks/results/scoring_precision.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from ebyd_hf.data import load_task
from ebyd_hf.trigger_search import flippable_rows, rank_tokens_by_drift, score_combinations

from common import DATA, environment  # benchmarks/ is on sys.path
from drift_ranks import cached_suspects, load_base, trigger_words
from text_attacks import SETUPS

HERE = os.path.dirname(os.path.abspath(__file__))
DTYPES = ("float32", "bfloat16")
ROWS = 2  # sentences per combination, as the combination search scores them (`rank_rows`)


def compare(model, tokenizer, rows, target: int, combos: np.ndarray, *, top: int, max_length: int) -> dict:
    """Both precisions' scores of ``combos``: speed, the largest difference, and the overlap of their best."""
    scores, seconds = {}, {}
    for dtype in DTYPES:
        start = time.perf_counter()
        scores[dtype] = score_combinations(
            model, tokenizer, rows, target, combos, rows=ROWS, max_length=max_length, dtype=dtype
        )
        seconds[dtype] = time.perf_counter() - start
    best = {d: np.argsort(-s, kind="stable")[:top] for d, s in scores.items()}
    return {
        "candidates": len(combos),
        "sequences_per_second": {d: ROWS * len(combos) / seconds[d] for d in DTYPES},
        "speedup": seconds["float32"] / seconds["bfloat16"],
        "max_abs_difference": float(np.abs(scores["float32"] - scores["bfloat16"]).max()),
        "spread": float(np.ptp(scores["float32"])),
        f"top_{top}_shared": len(set(best["float32"]) & set(best["bfloat16"])),
        "scores": scores,
    }


def rank_of(scores: np.ndarray, index: int | None) -> int | None:
    return None if index is None else int((scores > scores[index]).sum())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suspect_cache", default="runs/text_suspects")
    p.add_argument("--data", default=DATA, help="folder holding sst2/, imdb/, twitter/, agnews/")
    p.add_argument("--model", default=None, help="the suspects' pre-trained base (default: pip-shipped MiniLM)")
    p.add_argument("--pair_pool", type=int, default=200, help="best drift-ranked words whose pairs are scored")
    p.add_argument("--triple_pool", type=int, default=40, help="best drift-ranked words whose triples are scored")
    p.add_argument("--top", type=int, default=64, help="best candidates compared (the search verifies 64)")
    p.add_argument("--output", default=os.path.join(HERE, "results", "scoring_precision.json"))
    args = p.parse_args(argv)
    tokenizer, base, ids = load_base(args.model)
    results = {"environment": environment()}
    for dataset, attack_name, folder in cached_suspects(args.suspect_cache):
        if attack_name == "clean" or dataset not in SETUPS:
            continue
        setup = SETUPS[dataset]
        model = AutoModelForSequenceClassification.from_pretrained(os.path.join(args.suspect_cache, folder)).eval()
        test = load_task(os.path.join(args.data, dataset))["test"]
        rows = flippable_rows(model, tokenizer, test["text"][:400], test["label"][:400], setup.target)
        scores = rank_tokens_by_drift(model, base, ids, components=0)
        order = ids[np.argsort(-scores[ids], kind="stable")]
        position = {int(t): i for i, t in enumerate(order)}
        words = [position.get(tokenizer.convert_tokens_to_ids(w)) for w in trigger_words(attack_name)]
        entry = {"suspect": folder, "rows": len(rows)}
        for k, size in ((2, args.pair_pool), (3, args.triple_pool)):
            index = np.array(list(itertools.combinations(range(size), k)))
            measured = compare(
                model, tokenizer, rows, setup.target, order[index], top=args.top, max_length=setup.max_length
            )
            # the best-drifted k of the attack's own words inside the pool, and where their combination ranks
            inside = sorted(w for w in words if w is not None and w < size)[:k]
            where = next((i for i, c in enumerate(index) if list(c) == inside), None) if len(inside) == k else None
            scored = measured.pop("scores")
            entry[f"{k}_words"] = {
                **measured,
                "trigger": tokenizer.convert_ids_to_tokens(order[inside].tolist()) if where is not None else [],
                "trigger_rank": {d: rank_of(scored[d], where) for d in DTYPES},
            }
        results[f"{dataset}/{attack_name}"] = entry
    print(
        f"\n| suspect | candidates | float32 seq/s | bfloat16 seq/s | speedup | largest difference (spread) "
        f"| best {args.top} shared | trigger words' rank, float32 / bfloat16 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for key, entry in results.items():
        if key == "environment":
            continue
        for k in (2, 3):
            m = entry[f"{k}_words"]
            fast = m["sequences_per_second"]
            trigger = " ".join(m["trigger"]) or "none in the pool"
            ranks = " / ".join("–" if r is None else str(r) for r in m["trigger_rank"].values())
            print(
                f"| {key}, {k}-word | {m['candidates']:,} | {fast['float32']:.0f} | {fast['bfloat16']:.0f} | "
                f"{m['speedup']:.2f}× | {m['max_abs_difference']:.3f} ({m['spread']:.1f}) | "
                f"{m[f'top_{args.top}_shared']} | {trigger}: {ranks} |"
            )
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.output}; torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()

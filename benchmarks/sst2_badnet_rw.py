"""Benchmark: the literal EBYD defense (CUL + Recover-Pruning) on a BadNet-RW MiniLM suspect, SST-2.

One run: poison SST-2 → train the suspect → defend it → fine-tune baseline with the same steps and data → table +
JSON. Nothing is chosen on the evaluation split; it is only measured.

    HF_HUB_OFFLINE=1 python benchmarks/sst2_badnet_rw.py                # ../shared/data/sst2, pip-shipped MiniLM
    python benchmarks/sst2_badnet_rw.py --data sst2 --model sentence-transformers/all-MiniLM-L6-v2   # online
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from transformers import set_seed

from ebyd_hf import DefenseConfig, create_attack, load_classifier, load_task, poison_task, run_defense
from ebyd_hf.data import label_names
from ebyd_hf.evaluation import backdoor_metrics
from ebyd_hf.processing import collator_for, prepare
from ebyd_hf.removal import finetune

from common import MINILM, environment, minilm_path, text_train_args  # benchmarks/ is on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "sst2"))
    p.add_argument("--model", default=None, help="base model (default: the pip-shipped all-MiniLM-L6-v2)")
    p.add_argument("--train_size", type=int, default=6000)
    p.add_argument("--defense_size", type=int, default=500)
    p.add_argument("--poison_rate", type=float, default=0.1)
    p.add_argument("--target", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max_length", type=int, default=64)
    p.add_argument("--train_epochs", type=float, default=3)
    p.add_argument("--unlearn_epochs", type=float, default=20)
    p.add_argument("--recover_epochs", type=float, default=20)
    p.add_argument("--output", default=os.path.join(HERE, "results", "sst2_badnet_rw.json"))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="ebyd_bench_")
    attack = create_attack("badnet_rw")
    data = poison_task(
        load_task(args.data),
        attack,
        rate=args.poison_rate,
        target=args.target,
        seed=args.seed,
        defense_size=args.defense_size,
        train_size=args.train_size,
    )
    names = label_names(data)
    set_seed(args.seed)  # the fresh classification head is drawn at load time
    base, tokenizer = load_classifier(
        args.model or minilm_path(), num_labels=len(names), id2label=dict(enumerate(names)), new_head=True
    )
    collator = collator_for(tokenizer)
    tok = {k: prepare(v, tokenizer, max_length=args.max_length) for k, v in data.items()}

    def measure(model):
        return backdoor_metrics(model, tok["test"], collator=collator, asr_set=tok["test_poisoned"], target=args.target)

    start = time.perf_counter()
    suspect = finetune(
        base,
        tok["train"],
        collator=collator,
        args=text_train_args(
            os.path.join(scratch, "suspect"), args.seed, learning_rate=5e-5, num_train_epochs=args.train_epochs
        ),
    )
    t_train = time.perf_counter() - start
    suspect_metrics = measure(suspect)
    print("suspect", suspect_metrics, flush=True)

    config = DefenseConfig(
        max_length=args.max_length,
        mask_kinds=["layernorm"],
        removal="recover_prune",  # the paper's method, literally (text_purification.py compares the default)
        seed=args.seed,
        unlearn={"learning_rate": 1e-5, "num_train_epochs": args.unlearn_epochs},
        recover={"num_train_epochs": args.recover_epochs},
    )
    result = run_defense(
        suspect,
        tokenizer,
        data["defense"],
        config=config,
        scratch_dir=scratch,
        test=data["test"],
        asr_set=data["test_poisoned"],
        target=args.target,
    )
    report = result.report()

    # Baseline: plain fine-tuning on the same 500 clean rows for as many steps as mask recovery took.
    start = time.perf_counter()
    tuned = finetune(
        suspect,
        tok["defense"],
        collator=collator,
        args=text_train_args(
            os.path.join(scratch, "ft"), args.seed, learning_rate=5e-5, max_steps=result.recovery.steps
        ),
    )
    t_ft = time.perf_counter() - start
    ft_metrics = measure(tuned)

    out = {
        "target": args.target,
        "label_found": result.label.label,
        "bem": result.exposure.bem,
        "suspect": suspect_metrics,
        "exposed": result.metrics["exposed"],
        "after_rp": result.metrics["purified"],
        "after_ft": ft_metrics,
        "seconds": {"train": t_train, **result.seconds, "finetune": t_ft},
        "exposure": report["exposure"],
        "pruning": report["pruning"],
        "setup": {
            "model": MINILM if args.model is None else args.model,
            "data": os.path.normpath(args.data),
            "train_rows": len(data["train"]),
            "poisoned_rows": int(sum(data["train"]["poisoned"])),
            "defense_rows": len(data["defense"]),
            "test_rows": len(data["test"]),
            "asr_rows": len(data["test_poisoned"]),
            "max_length": args.max_length,
            "seed": args.seed,
            "train_epochs": args.train_epochs,
            "finetune_steps": result.recovery.steps,
            "defense_config": report["config"],
        },
        "environment": environment(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(out, f, indent=2)
    print_table(out)
    print(f"wrote {args.output}")


def print_table(out: dict) -> None:
    rows = [
        ("suspect", out["suspect"]),
        ("exposed (CUL)", out["exposed"]),
        ("after CUL+RP", out["after_rp"]),
        ("after fine-tuning", out["after_ft"]),
    ]
    print(f"\n{'model':<20}{'CA':>8}{'ASR':>8}{'CTR':>8}")
    for name, m in rows:
        print(f"{name:<20}{m['ca']:>8.3f}{m['asr']:>8.3f}{m['clean_target_rate']:>8.3f}")
    print(
        f"label found {out['label_found']} (target {out['target']}), exposed target share "
        f"{out['exposed']['target_share']:.3f}, BEM {out['bem']}"
    )
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in out["seconds"].items()))


if __name__ == "__main__":
    main()

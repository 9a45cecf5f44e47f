"""Benchmark: text purification methods side by side on three BadNet-RW MiniLM suspects (SST-2).

For each suspect: poison SST-2 → train the suspect → one Clean Unlearning exposure shared by every EBYD
variant → the default text defense, the literal paper method (CUL + Recover-Pruning), plain fine-tuning and
every other variant, each measured on the same clean test set and triggered (ASR) set. Thresholds, stopping
points and trigger words are chosen on the clean defense rows only; the evaluation split is only measured.

    HF_HUB_OFFLINE=1 python benchmarks/text_purification.py          # ../shared/data/sst2, pip-shipped MiniLM

Writes ``benchmarks/results/text_purification.json`` keyed by suspect name (see ``--help``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ebyd_hf import DefenseConfig, create_attack, load_classifier, load_task, poison_task, run_defense
from ebyd_hf.data import label_names
from ebyd_hf.evaluation import backdoor_metrics
from ebyd_hf.processing import collator_for, prepare
from ebyd_hf.removal import finetune

from common import MINILM, environment, minilm_path, text_train_args  # benchmarks/ is on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = {"asr_minus_ctr": 0.05, "asr": 0.241, "ca_drop": 0.03}  # per suspect, from the issue / the paper


@dataclass(frozen=True)
class Suspect:
    name: str
    seed: int
    words: tuple[str, ...] = ("cf", "mn", "bb", "tq")


SUSPECTS = [
    Suspect("sst2_badnet_rw_seed42", 42),  # the spine benchmark's suspect (benchmarks/sst2_badnet_rw.py)
    Suspect("sst2_badnet_rw_seed1", 1),
    Suspect("sst2_badnet_rw_mb_kv_seed2", 2, ("mb", "kv")),
]


@dataclass
class Variant:
    """One named defense option: DefenseConfig overrides, and whether it reuses the shared exposure."""

    name: str
    about: str
    overrides: dict = field(default_factory=dict)
    shared_exposure: bool = True


DEFAULT = Variant("trigger_unlearn", "default text defense: search triggers on the suspect, unlearn, repeat")
LITERAL = Variant(
    "recover_prune", "literal EBYD-RP: LayerNorm γ masks, threshold on held-out rows", {"removal": "recover_prune"}
)
VARIANTS = [
    Variant(
        "trigger_unlearn_gradient_ranking",
        "the default with the first-order (HotFlip-style) ranking of earlier versions instead of exact insertion",
        {"search": {"ranking": "gradient"}},
    ),
    Variant(
        "trigger_unlearn_search_exposed",
        "first trigger search ranks and verifies on the exposed model instead of the suspect",
        {"search_model": "exposed"},
    ),
    Variant("trigger_unlearn_one_round", "a single search → unlearn round", {"search_rounds": 1}),
    Variant(
        "finetune_same_budget",
        "plain fine-tuning, same rows/lr as the default and as many steps as one unlearning round (which trains "
        "on each row twice: clean and triggered), no triggers",
        {"removal": "finetune", "finetune": {"num_train_epochs": 6}},
    ),
    Variant(
        "prune_finetune",
        "RP masks, deep prune (threshold within 10 held-out points), fine-tune with pruned units held off",
        {"removal": "prune_finetune", "ca_tolerance": 0.10},
    ),
    Variant(
        "recover_prune_shallow_cul",
        "RP after a shallower exposure: CUL stops 10 points above the majority rate",
        {
            "removal": "recover_prune",
            "unlearn": {"learning_rate": 1e-5, "num_train_epochs": 20, "ca_floor_margin": 0.1},
        },
        shared_exposure=False,
    ),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "sst2"))
    p.add_argument("--model", default=None, help="base model (default: the pip-shipped all-MiniLM-L6-v2)")
    p.add_argument("--suspects", nargs="*", default=None, help="names to run (default: all three)")
    p.add_argument("--variants", nargs="*", default=None, help="variant names to run (default: all)")
    p.add_argument("--train_size", type=int, default=6000)
    p.add_argument("--defense_size", type=int, default=500)
    p.add_argument("--poison_rate", type=float, default=0.1)
    p.add_argument("--target", type=int, default=1)
    p.add_argument("--max_length", type=int, default=64)
    p.add_argument("--train_epochs", type=float, default=3)
    p.add_argument(
        "--suspect_cache", default=None, help="folder to save trained suspects in and reuse them from (exploration)"
    )
    p.add_argument("--output", default=os.path.join(HERE, "results", "text_purification.json"))
    return p.parse_args(argv)


def base_config(args, seed: int, **overrides) -> DefenseConfig:
    """The benchmark's defense settings: library defaults, the spine's exposure and mask settings."""
    kw = dict(
        max_length=args.max_length,
        mask_kinds=["layernorm"],
        seed=seed,
        unlearn={"learning_rate": 1e-5, "num_train_epochs": 20, "disable_tqdm": True},
        recover={"num_train_epochs": 20, "disable_tqdm": True},
        finetune={"disable_tqdm": True},
    )
    for key, value in overrides.items():
        kw[key] = {**kw[key], **value} if isinstance(value, dict) and key in kw else value
    return DefenseConfig(**kw)


def get_suspect(spec: Suspect, data, tokenizer, tok, args, scratch):
    """Train the suspect (or load it from ``--suspect_cache``); returns the model and training seconds."""
    cached = os.path.join(args.suspect_cache, spec.name) if args.suspect_cache else None
    if cached and os.path.exists(os.path.join(cached, "config.json")):
        return AutoModelForSequenceClassification.from_pretrained(cached).eval(), None
    names = label_names(data)
    base, _ = load_classifier(
        args.model or minilm_path(), num_labels=len(names), id2label=dict(enumerate(names)), new_head=True
    )
    start = time.perf_counter()
    suspect = finetune(
        base,
        tok["train"],
        collator=collator_for(tokenizer),
        args=text_train_args(
            os.path.join(scratch, "suspect"), spec.seed, learning_rate=5e-5, num_train_epochs=args.train_epochs
        ),
    )
    seconds = time.perf_counter() - start
    if cached:
        suspect.save_pretrained(cached)
    return suspect, seconds


def log_progress(args, suspect: str, what: str, row: dict) -> None:
    """Append one measured row to ``<output>.progress.jsonl`` as soon as it exists, so a run stopped half-way
    (long runs on shared CPUs) still leaves what it measured; the JSON proper is written only at the end."""
    with open(args.output + ".progress.jsonl", "a") as f:
        f.write(json.dumps({"suspect": suspect, "what": what, **row}) + "\n")


def run_suspect(spec: Suspect, args, variants: list[Variant]) -> dict:
    start_all = time.perf_counter()
    scratch = tempfile.mkdtemp(prefix=f"ebyd_purify_{spec.name}_")
    attack = create_attack("badnet_rw", words=spec.words)
    data = poison_task(
        load_task(args.data),
        attack,
        rate=args.poison_rate,
        target=args.target,
        seed=spec.seed,
        defense_size=args.defense_size,
        train_size=args.train_size,
    )
    tokenizer = AutoTokenizer.from_pretrained(args.model or minilm_path())
    collator = collator_for(tokenizer)
    tok = {k: prepare(v, tokenizer, max_length=args.max_length) for k, v in data.items()}
    suspect, t_train = get_suspect(spec, data, tokenizer, tok, args, scratch)

    def measure(model) -> dict:
        m = backdoor_metrics(model, tok["test"], collator=collator, asr_set=tok["test_poisoned"], target=args.target)
        return {k: round(v, 4) for k, v in m.items()}

    suspect_metrics = measure(suspect)
    print(f"[{spec.name}] suspect {suspect_metrics}", flush=True)
    log_progress(args, spec.name, "suspect", suspect_metrics)

    def defend(variant: Variant, exposure=None, probe: bool = False):
        start = time.perf_counter()
        result = run_defense(
            suspect,
            tokenizer,
            data["defense"],
            config=base_config(args, spec.seed, **variant.overrides),
            scratch_dir=os.path.join(scratch, variant.name),
            # Only the first run traces ASR during exposure; the purified model is measured here, once.
            test=data["test"] if probe else None,
            asr_set=data["test_poisoned"] if probe else None,
            target=args.target if probe else None,
            exposure=exposure,
        )
        row = {
            "name": variant.name,
            "about": variant.about,
            "settings": variant.overrides,
            **measure(result.purified),
            "label_found": result.label.label,
            "seconds": round(time.perf_counter() - start, 1),
            "details": details(result.report()),
        }
        print(f"[{spec.name}] {variant.name}: {fmt(row)}", flush=True)
        if probe:
            log_progress(args, spec.name, "exposed", result.metrics["exposed"])
        log_progress(args, spec.name, "variant", row)
        return result, row

    default, default_row = defend(DEFAULT, probe=True)
    exposure = default.exposure
    exposed_metrics = default.metrics["exposed"]
    # The cheap variants first, the expensive baselines (mask recovery, long fine-tuning) last: on a shared CPU
    # a run stopped early has then measured the most rows (see `log_progress`).
    variant_rows = [defend(v, exposure if v.shared_exposure else None)[1] for v in variants]
    literal, literal_row = defend(LITERAL, exposure)

    # The spine's fine-tuning baseline: all 500 clean rows, as many steps as mask recovery took.
    start = time.perf_counter()
    steps = literal.recovery.steps
    tuned = finetune(
        suspect,
        tok["defense"],
        collator=collator,
        args=text_train_args(os.path.join(scratch, "ft"), spec.seed, learning_rate=5e-5, max_steps=steps),
    )
    ft_row = {
        "name": "finetune",
        "about": "spine baseline: fine-tune on the 500 defense rows, AdamW 5e-5, as many steps as mask recovery",
        "settings": {"learning_rate": 5e-5, "max_steps": steps, "rows": len(data["defense"])},
        **measure(tuned),
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(f"[{spec.name}] finetune: {fmt(ft_row)}", flush=True)
    log_progress(args, spec.name, "variant", ft_row)

    rows = [default_row, literal_row, ft_row, *variant_rows]

    def metrics_of(row):
        return {k: row[k] for k in ("ca", "asr", "clean_target_rate")}

    out = {
        "target": args.target,
        "label_found": default.label.label,
        "trigger_words": list(spec.words),
        "triggers_found": default.unlearning.triggers,
        "trigger_label": default.unlearning.label,
        "labels_searched": default.unlearning.labels_searched,
        "suspect": suspect_metrics,
        "exposed": exposed_metrics,
        "after_default": metrics_of(default_row),
        "after_ft": metrics_of(ft_row),
        "after_literal_rp": metrics_of(literal_row),
        "targets_met": targets_met(suspect_metrics, default_row, ft_row),
        "seconds": {"total": round(time.perf_counter() - start_all, 1), "train_suspect": t_train},
        "suspect_from_cache": t_train is None,
        "variants": rows,
        "exposure": {k: default.report()["exposure"][k] for k in ("bem", "steps", "stop_reason", "trace")},
        "setup": {
            "seed": spec.seed,
            "attack": {"name": "badnet_rw", "words": list(spec.words), "num_triggers": 1},
            "train_rows": len(data["train"]),
            "poisoned_rows": int(sum(data["train"]["poisoned"])),
            "defense_rows": len(data["defense"]),
            "test_rows": len(data["test"]),
            "asr_rows": len(data["test_poisoned"]),
            "defense_config": asdict(base_config(args, spec.seed)),
        },
    }
    return out


def details(report: dict) -> dict:
    """The parts of a defense report worth keeping per variant (no per-candidate lists beyond the top)."""
    out = {"removal": report["removal"]}
    if "pruning" in report:
        p = report["pruning"]
        out["pruning"] = {k: p[k] for k in ("threshold", "pruned_units", "total_units", "recovery_steps")}
        if p["threshold_search"]:
            out["pruning"]["holdout_ca"] = {
                "unpruned": p["threshold_search"]["baseline_ca"],
                "table": p["threshold_search"]["table"],
            }
    if "trigger_unlearning" in report:
        t = report["trigger_unlearning"]
        out["trigger_unlearning"] = {
            "label": t.get("label"),
            "blocks": [
                {k: b[k] for k in ("round", "block", "rows", "max_flip_rate")} for b in t.get("unlearning_blocks", [])
            ],
            "triggers": t["triggers"],
            "rounds": [
                {
                    "triggers": r["triggers"],
                    "rows": r["rows"],
                    "seconds": round(r["seconds"], 1),
                    "top_candidates": sorted(r["candidates"], key=lambda c: -c["flip_rate"])[:12],
                }
                for r in t["rounds"]
            ],
        }
    if report["exposure"]["stop_reason"]:
        out["exposure_steps"] = report["exposure"]["steps"]
    return out


def targets_met(suspect: dict, default: dict, ft: dict) -> dict:
    gap = default["asr"] - default["clean_target_rate"]
    drop = suspect["ca"] - default["ca"]
    return {
        "asr_minus_ctr": round(gap, 4),
        "ca_drop": round(drop, 4),
        "asr_minus_ctr_ok": gap <= TARGETS["asr_minus_ctr"],
        "asr_ok": default["asr"] <= TARGETS["asr"],
        "ca_drop_ok": drop <= TARGETS["ca_drop"],
        # every fine-tuning baseline (the spine's long one here; the same-budget one is in `variants`) must leave
        # a higher ASR; their CA is reported beside it, since fine-tuning may keep more accuracy
        "beats_finetune_ok": default["asr"] < ft["asr"],
        "finetune_ca": ft["ca"],
    }


def fmt(m: dict, width: int | None = None) -> str:
    values = [m[k] for k in ("ca", "asr", "clean_target_rate")]
    return "".join(f"{v:>{width}.3f}" for v in values) if width else " / ".join(f"{v:.3f}" for v in values)


def main(argv=None):
    args = parse_args(argv)
    suspects = [s for s in SUSPECTS if args.suspects is None or s.name in args.suspects]
    variants = [v for v in VARIANTS if args.variants is None or v.name in args.variants]
    if not suspects:
        sys.exit(f"no suspect matches {args.suspects}; known: {[s.name for s in SUSPECTS]}")
    start = time.perf_counter()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    if os.path.exists(args.output + ".progress.jsonl"):
        os.remove(args.output + ".progress.jsonl")
    results = {s.name: run_suspect(s, args, variants) for s in suspects}
    results["_meta"] = {
        "command": "python benchmarks/text_purification.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "targets": TARGETS,
        "model": MINILM if args.model is None else args.model,
        "data": os.path.normpath(args.data),
        "seconds": round(time.perf_counter() - start, 1),
        "environment": environment(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print_table(results)
    print(f"wrote {args.output}")


def print_table(results: dict) -> None:
    print(f"\n{'suspect':<28}{'method':<34}{'CA':>7}{'ASR':>7}{'CTR':>7}")
    for name, r in results.items():
        if name.startswith("_"):
            continue
        print(
            f"{name:<28}{'suspect':<34}"
            + "".join(f"{r['suspect'][k]:>7.3f}" for k in ("ca", "asr", "clean_target_rate"))
        )
        for row in r["variants"]:
            print(f"{'':<28}{row['name']:<34}" + "".join(f"{row[k]:>7.3f}" for k in ("ca", "asr", "clean_target_rate")))
        print(f"{'':<28}targets: {r['targets_met']}")


if __name__ == "__main__":
    main()

"""Benchmark: the four exposure methods (BEM), then detection on the exposed model — verdict + backdoor label,
Neural Cleanse (all labels on the original model vs. the exposed label on the exposed model) and STRIP (original
vs. exposed model) — on backdoored and clean suspects, vision and text.

One command, one run:

    HF_HUB_OFFLINE=1 python benchmarks/detection.py           # ../shared/data/{cifar10,sst2}; hours on 2 CPUs
    HF_HUB_OFFLINE=1 python benchmarks/detection.py --smoke   # a few rows and steps: checks the pipeline only

* vision: one suspect per attack (BadNets, Blend, SIG clean-label, WaNet), poisoned and trained exactly as
  ``recipes/cifar10/<attack>.yaml`` says (``model_name_or_path``, ``model_args``, ``image_size`` and every
  ``TrainingArguments`` key of its ``train:`` section; poison rate, target, seed), and clean models trained the
  same way without poison;
* text: all-MiniLM-L6-v2 fine-tuned on SST-2 (BadNet-RW, 10% → label 1) with the settings of
  ``benchmarks/sst2_badnet_rw.py`` (its argument defaults are read, not copied), and clean models trained the
  same way without poison.

Every suspect and clean model has its own seed. The verdict threshold and every detector setting are the library
defaults, fixed before this run from other clean models (README: "How the verdict threshold was chosen"); the
test split is only measured. Writes ``benchmarks/results/detection.json`` (``--smoke``: ``detection_smoke.json``)
and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict

from datasets import DatasetDict
from transformers import set_seed

from ebyd_hf import create_attack, load_classifier, load_task, poison_task, split_defense
from ebyd_hf.comparison import ComparisonConfig, compare_exposures
from ebyd_hf.data import label_names, subsample
from ebyd_hf.evaluation import backdoor_metrics
from ebyd_hf.processing import collator_for, prepare
from ebyd_hf.removal import finetune
from ebyd_hf.scan import ScanConfig, run_scan

import sst2_badnet_rw  # benchmarks/ is on sys.path when this file runs as a script
from common import (
    VISION_RECIPES,
    environment,
    minilm_path,
    recipe_train_args,
    suspect_settings,
    train_vision_model,
    vision_recipe,
)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")
VISION_ATTACKS = ("badnets", "blend", "sig", "wanet")
METHODS = ("cul", "cft", "prune", "awp")
# --smoke: rows and steps small enough to run the whole pipeline in a few minutes; its numbers mean nothing.
SMOKE = {
    "vision_train_size": 256,
    "vision_test_size": 96,
    "defense_size": 64,
    "text_train_size": 256,
    "epochs": 1,
    "exposure_epochs": 2,
    "nc": {"epochs": 2, "max_images": 32, "patience": 1, "early_stop_patience": 1},
    "strip": {"samples": 16, "n_perturbations": 4},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cifar10", default=os.path.join(DATA, "cifar10"))
    p.add_argument("--sst2", default=os.path.join(DATA, "sst2"))
    p.add_argument("--recipes", default=VISION_RECIPES, help="folder of the <attack>.yaml vision recipes")
    p.add_argument("--attacks", nargs="*", default=list(VISION_ATTACKS), choices=VISION_ATTACKS)
    # Not 101-103: the verdict threshold was chosen on those clean models (README, "How the verdict threshold ...").
    p.add_argument("--clean_vision_seeds", nargs="*", type=int, default=[104, 105])
    p.add_argument("--clean_text_seeds", nargs="*", type=int, default=[201])
    p.add_argument("--text_suspect", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--suspect_cache", default=None, help="folder of trained vision models to reuse (shared with cifar10.py)"
    )
    p.add_argument("--smoke", action="store_true", help="tiny data and budgets: checks the pipeline, not the method")
    p.add_argument("--output", default=None, help="default: results/detection.json (--smoke: detection_smoke.json)")
    args = p.parse_args(argv)
    args.text = sst2_badnet_rw.parse_args([])  # SST-2 training settings: those of the EBYD text benchmark
    if args.smoke:
        args.text.train_size, args.text.train_epochs = SMOKE["text_train_size"], SMOKE["epochs"]
    if args.output is None:
        args.output = os.path.join(HERE, "results", "detection_smoke.json" if args.smoke else "detection.json")
    return args


# ---------------------------------------------------------------- suspects


def text_model(data, seed: int, args, scratch: str):
    names = label_names(data)
    set_seed(seed)  # the fresh classification head is drawn at load time
    model, tokenizer = load_classifier(
        str(args.text.model or minilm_path()),
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        new_head=True,
    )
    train = {
        "learning_rate": 5e-5,
        "lr_scheduler_type": "constant",
        "num_train_epochs": args.text.train_epochs,
        "per_device_train_batch_size": 32,
    }
    start = time.perf_counter()
    model = finetune(
        model,
        prepare(data["train"], tokenizer, max_length=args.text.max_length),
        collator=collator_for(tokenizer),
        args=recipe_train_args(os.path.join(scratch, "train"), seed, train),
    )
    return model, tokenizer, time.perf_counter() - start


def measure(model, processor, data, target, max_length):
    prep = lambda ds: prepare(ds, processor, max_length=max_length)  # noqa: E731
    asr = prep(data["test_poisoned"]) if "test_poisoned" in data else None
    return backdoor_metrics(model, prep(data["test"]), collator=collator_for(processor), asr_set=asr, target=target)


def smaller(data: DatasetDict, args) -> DatasetDict:
    """--smoke: a few hundred rows of each split; otherwise ``data`` itself."""
    if not args.smoke:
        return data
    sizes = {"train": SMOKE["vision_train_size"] + SMOKE["defense_size"], "test": SMOKE["vision_test_size"]}
    return DatasetDict({k: subsample(v, sizes.get(k), seed=0) for k, v in data.items()})


# ---------------------------------------------------------------- detection


def scan_config(modality: str, seed: int, *, suspect: bool, args, unlearn: dict | None = None) -> ScanConfig:
    """Library defaults; only what differs between modalities (norm layers, text length, the recipe's CUL settings)
    is set here, and --smoke shrinks every budget."""
    config = {
        "seed": seed,
        "max_length": args.text.max_length,
        "mask_kinds": ["batchnorm"] if modality == "image" else ["layernorm"],
        "eval_batch_size": 256 if modality == "image" else 64,
        "exposure_args": dict(unlearn or {}),
        "neural_cleanse": "both" if suspect else "exposed",
        "strip_args": {"n_perturbations": 100 if modality == "image" else 20},
    }
    if args.smoke:
        epochs = {"num_train_epochs": SMOKE["exposure_epochs"]}
        config["exposure_args"].update(epochs)
        config.update(
            corroborate_args=epochs if modality == "text" else {},  # images corroborate by pruning: no epochs
            nc_args=SMOKE["nc"],
            probe_size=SMOKE["vision_test_size"],
            strip_samples=SMOKE["strip"]["samples"],
            strip_args={"n_perturbations": SMOKE["strip"]["n_perturbations"]},
        )
    return ScanConfig(**config)


def examine(name, model, processor, data, *, config: ScanConfig, args, scratch, suspect: bool) -> dict:
    """Scan one model (CUL exposure + a corroborating one → verdict, NC, STRIP); for a suspect also the other
    exposure methods, so that BEM is reported for all four."""
    asr_set = data.get("test_poisoned")
    scan = run_scan(
        model, processor, data["defense"], config=config, scratch_dir=scratch, test=data["test"], asr_set=asr_set
    )
    report = scan.report()
    found = scan.verdict.counts.index(max(scan.verdict.counts))
    print(f"{name}: verdict {report['verdict']} (exposed label {found}, share {report['share']:.3f})", flush=True)
    out = {
        "verdict": report["verdict"],
        "label_found": int(found),
        "label_share": report["share"],
        "corroboration": report["corroboration"],
        "dominance": report["dominance"],
        "threshold": report["threshold"],
        "seconds": dict(report["seconds"]),
        "scan": report,
    }
    nc = report["neural_cleanse"] or {}
    if nc:
        out["nc"] = {}
    if "exposed_label" in nc:
        b = nc["exposed_label"]
        out["nc"]["exposed_label"] = {
            "flagged": b["flagged"],
            "label": b["label"],
            "seconds": b["seconds"],
            "l1_norm": b["l1_norms"][str(b["label"])],
            "transfer_rate": b["transfer_rate"],
        }
    if "all_labels" in nc:
        a = nc["all_labels"]
        out["nc"]["all_labels"] = {
            "flagged": a["flagged"],
            "label": a["label"],
            "seconds": a["seconds"],
            "anomaly_index": a["anomaly_indices"][str(a["label"])],
            "l1_norms": a["l1_norms"],
        }
    if report["strip"]:
        out["strip_auroc"] = {k: v["auroc"] for k, v in report["strip"].items()}
    if suspect:
        exposures = {scan.exposure.method: scan.exposure}
        if scan.corroboration is not None:
            exposures[scan.corroboration.method] = scan.corroboration
        others = [m for m in METHODS if m not in exposures]
        if others:
            smoke_args = {m: {"num_train_epochs": SMOKE["exposure_epochs"]} for m in others if m != "prune"}
            exposures |= compare_exposures(
                model,
                processor,
                data["defense"],
                test=data["test"],
                asr_set=asr_set,
                config=ComparisonConfig(
                    methods=others,
                    method_args=smoke_args if args.smoke else {},
                    mask_kinds=config.mask_kinds,
                    max_length=config.max_length,
                    eval_batch_size=config.eval_batch_size,
                    probe_size=config.probe_size,
                    seed=config.seed,
                ),
                scratch_dir=scratch,
            )
        out["bem"] = {}
        out["exposures"] = {}
        for method in METHODS:
            exposure = exposures[method]
            out["bem"][method] = exposure.bem
            out["seconds"].setdefault(f"expose_{method}", exposure.seconds)
            last = exposure.trace[-1]
            out["exposures"][method] = {
                "stop_reason": exposure.stop_reason,
                "top_label": last.get("top_label"),
                "top_share": last.get("top_share"),
                "trace": exposure.trace,
            }
        print(f"{name}: BEM {out['bem']}", flush=True)
    return out


# ---------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="ebyd_detection_")
    suspects, clean_models, vision_settings = {}, {}, {}
    started = time.perf_counter()
    defense_size = SMOKE["defense_size"] if args.smoke else None

    cifar = smaller(load_task(args.cifar10), args) if args.attacks or args.clean_vision_seeds else None
    for attack in args.attacks:
        recipe = vision_recipe(attack, args.recipes)
        train, target, seed = dict(recipe["train"]), recipe["target"], recipe["seed"]
        if args.smoke:
            train["num_train_epochs"] = SMOKE["epochs"]
        vision_settings[attack] = train
        data = poison_task(
            cifar,
            create_attack(recipe["attack"], **recipe.get("attack_kwargs", {})),
            rate=recipe["poison"]["poison_rate"],
            target=target,
            seed=seed,
            defense_size=defense_size or recipe["poison"].get("defense_size", 500),
        )
        about = suspect_settings(recipe)
        model, processor, seconds = train_vision_model(
            data, seed, train, scratch, cache=args.suspect_cache, name=f"cifar10_{attack}", about=about
        )
        metrics = measure(model, processor, data, target, args.text.max_length)
        print(f"{attack}: suspect {metrics} ({'cached' if seconds is None else f'{seconds:.0f}s'})", flush=True)
        unlearn = recipe.get("defend", {}).get("unlearn")
        config = scan_config("image", seed, suspect=True, args=args, unlearn=unlearn)
        result = examine(attack, model, processor, data, config=config, args=args, scratch=scratch, suspect=True)
        suspects[attack] = {"target": target, "suspect": metrics, **result}
        suspects[attack]["seconds"]["train"] = seconds  # None: loaded from --suspect_cache

    for seed in args.clean_vision_seeds:
        recipe = vision_recipe("badnets", args.recipes)  # trained like the BadNets suspect, without poison
        train = dict(recipe["train"], **({"num_train_epochs": SMOKE["epochs"]} if args.smoke else {}))
        parts = split_defense(cifar, defense_size or recipe["poison"].get("defense_size", 500), seed=seed)
        data = DatasetDict(train=parts["train"], defense=parts["defense"], test=parts["test"])
        model, processor, seconds = train_vision_model(
            data, seed, train, scratch, cache=args.suspect_cache, name="cifar10_clean", about=recipe["train"]
        )
        metrics = measure(model, processor, data, None, args.text.max_length)
        name = f"cifar10_{os.path.basename(str(train['model_name_or_path']))}_seed{seed}"
        print(f"{name}: clean model {metrics} ({'cached' if seconds is None else f'{seconds:.0f}s'})", flush=True)
        unlearn = recipe.get("defend", {}).get("unlearn")
        config = scan_config("image", seed, suspect=False, args=args, unlearn=unlearn)
        result = examine(name, model, processor, data, config=config, args=args, scratch=scratch, suspect=False)
        clean_models[name] = {"modality": "image", "clean": metrics, **result}
        clean_models[name]["seconds"]["train"] = seconds

    text = args.text
    sst2 = load_task(args.sst2)
    if args.smoke:
        sst2 = DatasetDict(train=sst2["train"], test=subsample(sst2["test"], SMOKE["vision_test_size"], seed=0))
    unlearn = {"learning_rate": 1e-5, "num_train_epochs": text.unlearn_epochs}  # as benchmarks/sst2_badnet_rw.py
    if args.text_suspect:
        data = poison_task(
            sst2,
            create_attack("badnet_rw"),
            rate=text.poison_rate,
            target=text.target,
            seed=text.seed,
            defense_size=defense_size or text.defense_size,
            train_size=text.train_size,
        )
        model, tokenizer, seconds = text_model(data, text.seed, args, scratch)
        metrics = measure(model, tokenizer, data, text.target, text.max_length)
        print(f"sst2_badnet_rw: suspect {metrics} ({seconds:.0f}s)", flush=True)
        config = scan_config("text", text.seed, suspect=True, args=args, unlearn=unlearn)
        result = examine(
            "sst2_badnet_rw", model, tokenizer, data, config=config, args=args, scratch=scratch, suspect=True
        )
        suspects["sst2_badnet_rw"] = {"target": text.target, "suspect": metrics, **result}
        suspects["sst2_badnet_rw"]["seconds"]["train"] = seconds

    for seed in args.clean_text_seeds:
        parts = split_defense(sst2, defense_size or text.defense_size, seed=seed)
        data = DatasetDict(
            train=subsample(parts["train"], text.train_size, seed=seed), defense=parts["defense"], test=parts["test"]
        )
        model, tokenizer, seconds = text_model(data, seed, args, scratch)
        metrics = measure(model, tokenizer, data, None, text.max_length)
        name = f"sst2_minilm_seed{seed}"
        print(f"{name}: clean model {metrics} ({'cached' if seconds is None else f'{seconds:.0f}s'})", flush=True)
        config = scan_config("text", seed, suspect=False, args=args, unlearn=unlearn)
        result = examine(name, model, tokenizer, data, config=config, args=args, scratch=scratch, suspect=False)
        clean_models[name] = {"modality": "text", "clean": metrics, **result}
        clean_models[name]["seconds"]["train"] = seconds

    out = {
        "suspects": suspects,
        "clean_models": clean_models,
        "summary": summarise(suspects, clean_models),
        "setup": {
            "smoke": args.smoke,
            "vision_training": vision_settings,
            "text": f"{text.model or 'all-MiniLM-L6-v2'} + fresh head, SST-2 ({text.train_size} training rows, "
            f"{text.train_epochs} epochs, AdamW 5e-5 constant, length {text.max_length})",
            "defaults": {
                "vision": asdict(scan_config("image", 0, suspect=True, args=args)),
                "text": asdict(scan_config("text", 0, suspect=True, args=args, unlearn=unlearn)),
            },
            "total_seconds": time.perf_counter() - started,
        },
        "environment": environment(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(out, f, indent=2)
    print_tables(out)
    print(f"wrote {args.output}")


def summarise(suspects: dict, clean_models: dict) -> dict:
    vision = {k: v for k, v in suspects.items() if "nc" in v}
    ratios = {
        k: v["nc"]["exposed_label"]["seconds"] / v["nc"]["all_labels"]["seconds"]
        for k, v in vision.items()
        if "all_labels" in v["nc"]
    }
    strip = [v["strip_auroc"] for v in suspects.values() if "strip_auroc" in v]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {
        "labels_correct": sum(v["label_found"] == v["target"] for v in suspects.values()),
        "suspects": len(suspects),
        "suspects_flagged": sum(v["verdict"] == "backdoored" for v in suspects.values()),
        "false_alarms": sum(v["verdict"] != "clean" for v in clean_models.values()),
        "clean_models": len(clean_models),
        "nc_exposed_flagged": sum(bool(v["nc"]["exposed_label"]["flagged"]) for v in vision.values()),
        "nc_all_labels_flagged": sum(bool(v["nc"].get("all_labels", {}).get("flagged")) for v in vision.values()),
        "nc_time_ratio": ratios,
        "strip_auroc_mean": {k: mean([s[k] for s in strip]) for k in ("original", "exposed")} if strip else None,
        "bem_mean": {m: mean([v["bem"][m] for v in suspects.values() if v["bem"].get(m) is not None]) for m in METHODS},
    }


def _f(x, pct=False):
    return "–" if x is None else (f"{100 * x:.1f}%" if pct else f"{x:.2f}")


def print_tables(out: dict) -> None:
    print(
        f"\n{'suspect':<16}{'target':>7}{'label':>6}{'share':>7}{'verdict':>12}"
        + "".join(f"{m:>7}" for m in METHODS)
        + f"{'NC A':>8}{'NC B':>8}{'B/A t':>7}{'STRIP o':>9}{'STRIP e':>9}"
    )
    for name, s in out["suspects"].items():
        nc = s.get("nc", {})
        a, b = nc.get("all_labels", {}), nc.get("exposed_label", {})
        ratio = b["seconds"] / a["seconds"] if a and b else None
        print(
            f"{name:<16}{s['target']:>7}{s['label_found']:>6}{s['label_share']:>7.2f}{s['verdict']:>12}"
            + "".join(f"{_f(s['bem'].get(m)):>7}" for m in METHODS)
            + f"{str(a.get('flagged', '–')):>8}{str(b.get('flagged', '–')):>8}{_f(ratio):>7}"
            + "".join(f"{_f(s.get('strip_auroc', {}).get(k), True):>9}" for k in ("original", "exposed"))
        )
    print(f"\n{'clean model':<26}{'CA':>7}{'label':>6}{'share':>7}{'verdict':>10}{'NC B':>7}")
    for name, c in out["clean_models"].items():
        b = c.get("nc", {}).get("exposed_label", {})
        print(
            f"{name:<26}{_f(c['clean']['ca'], True):>7}{c['label_found']:>6}{c['label_share']:>7.2f}"
            f"{c['verdict']:>10}{str(b.get('flagged', '–')):>7}"
        )
    print(json.dumps(out["summary"], indent=1))


if __name__ == "__main__":
    main()

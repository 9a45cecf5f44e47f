"""Benchmark: EBYD (CUL + Recover-Pruning with BatchNorm masks) on timm ResNet-18 suspects (quarter width, 64 px
input, as the recipes say), CIFAR-10, four attacks.

One command, one run. For each attack (BadNets, Blend, SIG clean-label, WaNet with noise mode; target 0) it runs
the settings of ``recipes/cifar10/<attack>.yaml`` in process: poison the CIFAR-10 mirror → train the suspect from
scratch → defend it with `run_defense` (500 clean defense rows) → fine-tune the suspect on the same 500 rows for
as many steps as mask recovery took (the baseline) → on the same exposure, the alternative removal
``trigger_unlearn`` (Neural Cleanse reverses the label's trigger on the suspect; it is unlearned) → a table and
one JSON keyed by attack. Nothing is chosen on
the test split; it is only measured.

    HF_HUB_OFFLINE=1 python benchmarks/cifar10.py                       # ../shared/data/cifar10, ~1 h on 2 CPUs
    HF_HUB_OFFLINE=1 python benchmarks/cifar10.py --suspect_cache runs/suspects  # keep the suspects for detection.py
    python benchmarks/cifar10.py --data cifar10 --attacks badnets blend  # the Hub copy; a subset of attacks
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time

import timm
from transformers import TrainingArguments

from ebyd_hf import DefenseConfig, create_attack, load_task, poison_task, run_defense
from ebyd_hf.evaluation import backdoor_metrics
from ebyd_hf.processing import collator_for, prepare
from ebyd_hf.removal import finetune

from common import DATA, suspect_settings, train_vision_model, vision_recipe  # benchmarks/ is on sys.path
from common import environment as common_environment

HERE = os.path.dirname(os.path.abspath(__file__))
ATTACKS = ("badnets", "blend", "sig", "wanet")
# The baseline: what a defender would do without EBYD, with the same data and steps (NAD/RNP-style settings).
FINETUNE = {"learning_rate": 0.01, "optim": "sgd", "optim_args": "momentum=0.9", "weight_decay": 5e-4}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(DATA, "cifar10"))
    p.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=ATTACKS)
    p.add_argument(
        "--suspect_cache", default=None, help="folder to keep trained suspects in and reuse (shared with detection.py)"
    )
    p.add_argument(
        "--reversal_rounds",
        type=int,
        default=None,
        help="reverse → unlearn rounds of the trigger-unlearning column (default: the recipe's, else the library's)",
    )
    p.add_argument("--output", default=os.path.join(HERE, "results", "cifar10.json"))
    return p.parse_args(argv)


def _known(cls, options: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in options.items() if k in names and k != "output_dir"}


def run_attack(
    name: str, data_path: str, scratch: str, cache: str | None = None, reversal_rounds: int | None = None
) -> dict:
    recipe = vision_recipe(name)
    train_cfg, poison_cfg = recipe["train"], recipe["poison"]
    target, seed = recipe["target"], recipe["seed"]
    attack = create_attack(recipe["attack"], **recipe.get("attack_kwargs", {}))
    data = poison_task(
        load_task(data_path),
        attack,
        rate=poison_cfg["poison_rate"],
        target=target,
        seed=seed,
        defense_size=poison_cfg["defense_size"],
    )
    suspect, processor, t_train = train_vision_model(
        data, seed, train_cfg, scratch, cache=cache, name=f"cifar10_{name}", about=suspect_settings(recipe)
    )
    collator = collator_for(processor)
    test, asr_set = prepare(data["test"], processor), prepare(data["test_poisoned"], processor)

    def measure(m):
        return backdoor_metrics(m, test, collator=collator, asr_set=asr_set, target=target, batch_size=256)

    suspect_metrics = measure(suspect)
    print(name, "suspect", suspect_metrics, f"trained in {t_train or 0:.0f}s", flush=True)

    config = DefenseConfig(**_known(DefenseConfig, recipe["defend"]))
    result = run_defense(
        suspect,
        processor,
        data["defense"],
        config=config,
        scratch_dir=scratch,
        test=data["test"],
        asr_set=data["test_poisoned"],
        target=target,
    )
    report = result.report()
    print(name, "EBYD", result.metrics, flush=True)

    recover = config.recover_config(scratch)
    ft_args = TrainingArguments(
        output_dir=os.path.join(scratch, "ft"),
        max_steps=result.recovery.steps,
        per_device_train_batch_size=recover.per_device_train_batch_size,
        lr_scheduler_type="constant",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        logging_strategy="no",
        seed=seed,
        **FINETUNE,
    )
    start = time.perf_counter()
    tuned = finetune(suspect, prepare(data["defense"], processor, augment=True), args=ft_args, collator=collator)
    t_ft = time.perf_counter() - start
    ft_metrics = measure(tuned)
    print(name, "fine-tuned", ft_metrics, flush=True)

    # The alternative removal on the same exposure and label: Neural Cleanse reverses the label's trigger on the
    # suspect and it is unlearned (`removal: trigger_unlearn`, the library's image settings).
    unlearned = run_defense(
        suspect,
        processor,
        data["defense"],
        config=dataclasses.replace(
            config, removal="trigger_unlearn", reversal_rounds=reversal_rounds or config.reversal_rounds
        ),
        scratch_dir=os.path.join(scratch, "trigger_unlearn"),
        exposure=result.exposure,
    )
    tu_metrics = measure(unlearned.purified)
    print(name, "trigger unlearning", tu_metrics, flush=True)

    return {
        "target": target,
        "label_found": result.label.label,
        "bem": result.exposure.bem,
        "suspect": suspect_metrics,
        "exposed": result.metrics["exposed"],
        "after_rp": result.metrics["purified"],
        "after_ft": ft_metrics,
        "after_trigger_unlearn": tu_metrics,
        "seconds": {
            "train": t_train or 0.0,
            **result.seconds,
            "finetune": t_ft,
            "trigger_unlearn": unlearned.seconds["reverse_trigger"] + unlearned.seconds["unlearn_trigger"],
        },
        "reversed_trigger_unlearning": unlearned.report()["reversed_trigger_unlearning"],
        "exposure": report["exposure"],
        "pruning": report["pruning"],
        "setup": {
            "recipe": f"recipes/cifar10/{name}.yaml",
            "attack": attack.settings(),
            "model": f"timm {train_cfg['model_name_or_path']} (random init, "
            f"{sum(p.numel() for p in suspect.parameters()) / 1e6:.1f}M parameters, model_args "
            f"{train_cfg.get('model_args') or {}}), input {processor.data_config['input_size'][-1]} px",
            "data": os.path.normpath(data_path),
            "train_rows": len(data["train"]),
            "poisoned_rows": int(sum(data["train"]["poisoned"])),
            "defense_rows": len(data["defense"]),
            "test_rows": len(data["test"]),
            "asr_rows": len(data["test_poisoned"]),
            "train": {k: v for k, v in train_cfg.items() if k not in ("output_dir",)},
            "finetune": {**FINETUNE, "steps": result.recovery.steps, "batch_size": ft_args.per_device_train_batch_size},
            "defense_config": report["config"],
        },
    }


def main(argv=None):
    args = parse_args(argv)
    out, start = {}, time.perf_counter()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    for name in args.attacks:
        with tempfile.TemporaryDirectory(prefix=f"ebyd_cifar10_{name}_") as scratch:
            out[name] = run_attack(name, args.data, scratch, args.suspect_cache, args.reversal_rounds)
        # rewritten after every attack, so a run stopped half-way keeps what it measured
        environment = common_environment(timm=timm.__version__, total_seconds=time.perf_counter() - start)
        for result in out.values():
            result["setup"]["environment"] = environment
        with open(args.output, "w") as f:
            json.dump(out, f, indent=2)
    print_table(out)
    print(f"wrote {args.output}")


def print_table(out: dict) -> None:
    pct = lambda v: f"{100 * v:5.1f}"  # noqa: E731
    head = f"{'attack':<9}{'suspect CA/ASR':>15}{'exposed CA/ASR/share':>22}{'BEM':>6}{'label':>6}"
    print(f"\n{head}{'CUL+RP CA/ASR':>15}{'FT CA/ASR':>12}{'NC-unlearn':>12}{'min':>6}")
    for name, r in out.items():
        s, e, rp, ft, tu = r["suspect"], r["exposed"], r["after_rp"], r["after_ft"], r["after_trigger_unlearn"]
        bem = "–" if r["bem"] is None else f"{r['bem']:.2f}"
        print(
            f"{name:<9}{pct(s['ca']):>9}/{pct(s['asr'])}{pct(e['ca']):>10}/{pct(e['asr'])}/{pct(e['target_share'])}"
            f"{bem:>6}{r['label_found']:>6}{pct(rp['ca']):>9}/{pct(rp['asr'])}{pct(ft['ca']):>6}/{pct(ft['asr'])}"
            f"{pct(tu['ca']):>6}/{pct(tu['asr'])}{sum(r['seconds'].values()) / 60:>6.1f}"
        )


if __name__ == "__main__":
    main()

"""Defend a suspected classifier with EBYD: expose (CUL) → backdoor label → removal → purified model.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/defend.py \
        --config recipes/sst2/badnet_rw.yaml [--suspect <Hub ID or folder>] [--push_to_hub --hub_model_id me/x]

Writes to ``output_dir``: the purified model (safetensors), its model card (README.md) with the measured
table, ``report.json`` and ``plots/``. The folder appears only when the whole run succeeded.
"""

import json
import tempfile
from dataclasses import dataclass, field

from ebyd_hf import DefenseConfig, run_defense
from ebyd_hf.cli import parse_recipe_args
from ebyd_hf.models import library_name, model_card, push_folder, save_model
from ebyd_hf.outputs import atomic_output_dir, process_state
from ebyd_hf.report import card_body, metrics_table, write_report
from ebyd_hf.suspect import SuspectArguments, load_suspect


@dataclass
class DefendArguments(SuspectArguments):
    push_to_hub: bool = field(default=False, metadata={"help": "Push the purified model folder to the Hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo for --push_to_hub."})


def main(argv=None):
    args, config = parse_recipe_args((DefendArguments, DefenseConfig), "defend", argv)
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id")
    model, processor, data, asr_set = load_suspect(args, seed=config.seed)
    with atomic_output_dir(args.output_dir, overwrite=args.overwrite) as tmp, tempfile.TemporaryDirectory() as scratch:
        result = run_defense(
            model,
            processor,
            data["defense"],
            config=config,
            scratch_dir=scratch,
            test=data["test"],
            asr_set=asr_set,
            target=args.target,
        )
        report = {"suspect": args.suspect, "dataset": args.dataset, "target": args.target, **result.report()}
        if process_state().is_main_process:
            card = model_card(
                "Purified with Expose Before You Defend",
                card_body(report, suspect=args.suspect, dataset=args.dataset),
                base_model=args.suspect,
                library_name=library_name(model),
            )
            save_model(result.purified, processor, tmp, card=card)
            trigger = result.reversal.trigger if result.reversal else None
            write_report(report, result.recovery and result.recovery.masks, tmp, trigger=trigger)
    print(metrics_table(report["metrics"]) if report["metrics"] else "no test data given: nothing measured")
    print(json.dumps({k: report[k] for k in ("label_found", "label_share")} | {"bem": report["exposure"]["bem"]}))
    if args.push_to_hub and process_state().is_main_process:
        print(push_folder(args.output_dir, args.hub_model_id))


if __name__ == "__main__":
    main()

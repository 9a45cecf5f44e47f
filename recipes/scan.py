"""Scan a suspected classifier: expose it, then detect on the exposed model. Text and image models.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/scan.py \
        --config recipes/sst2/badnet_rw.yaml [--suspect <Hub ID or folder>] [--output_dir runs/scan]

Writes to ``output_dir``: ``scan_report.json`` (verdict, backdoor label and its share, the exposure trace and BEM,
Neural Cleanse for image models, STRIP entropies and AUROC when triggered inputs are known) and ``plots/``
(exposure trace, STRIP histograms, reversed trigger mask/pattern/trigger PNGs). The folder appears only when the
whole run succeeded.
"""

import json
import tempfile
from dataclasses import dataclass, field

from ebyd_hf import create_attack, load_classifier, load_task, split_defense
from ebyd_hf.attacks import triggered_test_set
from ebyd_hf.cli import parse_recipe_args
from ebyd_hf.data import input_column, label_names
from ebyd_hf.outputs import atomic_output_dir, process_state
from ebyd_hf.scan import ScanConfig, run_scan


@dataclass
class ScanArguments:
    suspect: str = field(metadata={"help": "Suspected model: Hub ID or local folder (safetensors)."})
    dataset: str = field(metadata={"help": "Poisoned DatasetDict folder, or any task / Hub ID / folder of clean data."})
    output_dir: str = field(metadata={"help": "Where scan_report.json and plots/ go."})
    target: int | None = field(default=None, metadata={"help": "Known backdoor label: only to build an ASR set."})
    attack: str | None = field(
        default=None, metadata={"help": "Attack to build a triggered set when the data has none."}
    )
    attack_kwargs: dict = field(default_factory=dict, metadata={"help": "Attack options (JSON on the CLI)."})
    defense_size: int = field(default=500, metadata={"help": "Clean rows carved from train if no defense split."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output folder."})
    allow_pickle: bool = field(default=False, metadata={"help": "Allow a pickle-only suspect (runs its code!)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the Hub."})


def main(argv=None):
    args, config = parse_recipe_args((ScanArguments, ScanConfig), "scan", argv)
    data = load_task(args.dataset)
    if "defense" not in data:
        data = split_defense(data, args.defense_size, seed=config.seed)
    asr_set = data.get("test_poisoned")
    if asr_set is None and args.attack and args.target is not None:
        asr_set = triggered_test_set(
            data["test"], create_attack(args.attack, **args.attack_kwargs), target=args.target, seed=config.seed
        )
    model, processor = load_classifier(
        args.suspect,
        num_labels=len(label_names(data)),
        allow_pickle=args.allow_pickle,
        trust_remote_code=args.trust_remote_code,
        modality=input_column(data),
    )
    with atomic_output_dir(args.output_dir, overwrite=args.overwrite) as tmp, tempfile.TemporaryDirectory() as scratch:
        result = run_scan(
            model, processor, data["defense"], config=config, scratch_dir=scratch, test=data["test"], asr_set=asr_set
        )
        if process_state().is_main_process:
            result.save(tmp)
    report = result.report()
    summary = {k: report[k] for k in ("verdict", "label", "share", "threshold")} | {"bem": report["exposure"]["bem"]}
    if report["strip"]:
        summary["strip_auroc"] = {name: r["auroc"] for name, r in report["strip"].items()}
    if report["neural_cleanse"]:
        summary["nc_flagged"] = {mode: r["flagged"] for mode, r in report["neural_cleanse"].items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

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

from ebyd_hf.cli import parse_recipe_args
from ebyd_hf.outputs import atomic_output_dir, process_state
from ebyd_hf.scan import ScanConfig, run_scan
from ebyd_hf.suspect import SuspectArguments, load_suspect


def main(argv=None):
    args, config = parse_recipe_args((SuspectArguments, ScanConfig), "scan", argv)
    model, processor, data, asr_set = load_suspect(args, seed=config.seed)
    with atomic_output_dir(args.output_dir, overwrite=args.overwrite) as tmp, tempfile.TemporaryDirectory() as scratch:
        result = run_scan(
            model, processor, data["defense"], config=config, scratch_dir=scratch, test=data["test"], asr_set=asr_set
        )
        if process_state().is_main_process:
            result.save(tmp)
    report = result.report()
    summary = {k: report[k] for k in ("verdict", "label", "share", "dominance", "threshold")}
    summary["bem"] = report["exposure"]["bem"]
    if report["strip"]:
        summary["strip_auroc"] = {name: r["auroc"] for name, r in report["strip"].items()}
    if report["neural_cleanse"]:
        summary["nc_flagged"] = {mode: r["flagged"] for mode, r in report["neural_cleanse"].items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

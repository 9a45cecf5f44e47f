"""Compare the four exposure methods (CUL, CFT, pruning, AWP) on one suspect: BEM table + CA/ASR-vs-epoch plot.

    python recipes/compare_exposure.py --config recipes/sst2/badnet_rw.yaml [--output_dir runs/exposure]

BEM needs triggered test inputs: a poisoned DatasetDict (``test_poisoned``, from recipes/poison.py) or
``--attack`` and ``--target``. Writes ``exposure_comparison.json``, ``exposure_comparison.md`` and
``plots/exposure_methods.png`` to ``output_dir``.
"""

import tempfile
from dataclasses import dataclass, field

from ebyd_hf import create_attack, load_classifier, load_task, split_defense
from ebyd_hf.attacks import triggered_test_set
from ebyd_hf.cli import parse_recipe_args
from ebyd_hf.comparison import ComparisonConfig, compare_exposures, comparison_report, write_comparison
from ebyd_hf.data import DataError, input_column, label_names
from ebyd_hf.outputs import atomic_output_dir, process_state
from ebyd_hf.report import exposure_table


@dataclass
class CompareArguments:
    suspect: str = field(metadata={"help": "Suspected model: Hub ID or local folder (safetensors)."})
    dataset: str = field(metadata={"help": "Poisoned DatasetDict folder, or a task with --attack and --target."})
    output_dir: str = field(metadata={"help": "Where the comparison goes."})
    target: int | None = field(default=None, metadata={"help": "Backdoor label, to build the ASR set."})
    attack: str | None = field(default=None, metadata={"help": "Attack to build the ASR set when the data has none."})
    attack_kwargs: dict = field(default_factory=dict, metadata={"help": "Attack options (JSON on the CLI)."})
    defense_size: int = field(default=500, metadata={"help": "Clean rows carved from train if no defense split."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output folder."})
    allow_pickle: bool = field(default=False, metadata={"help": "Allow a pickle-only suspect (runs its code!)."})


def main(argv=None):
    args, config = parse_recipe_args((CompareArguments, ComparisonConfig), "expose", argv)
    data = load_task(args.dataset)
    if "defense" not in data:
        data = split_defense(data, args.defense_size, seed=config.seed)
    asr_set = data.get("test_poisoned")
    if asr_set is None:
        if not (args.attack and args.target is not None):
            raise DataError(
                "BEM needs triggered inputs: a poisoned dataset with test_poisoned, or --attack and --target"
            )
        asr_set = triggered_test_set(
            data["test"], create_attack(args.attack, **args.attack_kwargs), target=args.target, seed=config.seed
        )
    model, processor = load_classifier(
        args.suspect, num_labels=len(label_names(data)), allow_pickle=args.allow_pickle, modality=input_column(data)
    )
    with atomic_output_dir(args.output_dir, overwrite=args.overwrite) as tmp, tempfile.TemporaryDirectory() as scratch:
        exposures = compare_exposures(
            model, processor, data["defense"], test=data["test"], asr_set=asr_set, config=config, scratch_dir=scratch
        )
        if process_state().is_main_process:
            write_comparison(exposures, tmp, title=f"Exposure of {args.suspect}")
    print(exposure_table(comparison_report(exposures)))


if __name__ == "__main__":
    main()

"""Build a poisoned DatasetDict (train, defense, test, test_poisoned) and save it, or push it to the Hub.

python recipes/poison.py --config recipes/sst2/badnet_rw.yaml [--task ../shared/data/sst2]
"""

from dataclasses import dataclass, field

from ebyd_hf import create_attack, load_task, poison_task
from ebyd_hf.cli import parse_recipe_args
from ebyd_hf.outputs import atomic_output_dir


@dataclass
class PoisonArguments:
    task: str = field(metadata={"help": "Task name (sst2, imdb, twitter, agnews), Hub dataset ID, or local directory."})
    dataset: str = field(metadata={"help": "Where to save the poisoned DatasetDict."})
    target: int = field(metadata={"help": "Backdoor target label."})
    task_spec: str | None = field(
        default=None, metadata={"help": "Registered task whose columns and text cleaning apply to `task` (a folder)."}
    )
    attack: str = field(default="badnet_rw", metadata={"help": "Registered attack name."})
    attack_kwargs: dict = field(default_factory=dict, metadata={"help": "Attack options (JSON on the CLI)."})
    poison_rate: float = field(default=0.1, metadata={"help": "Share of training rows poisoned, in [0, 1]."})
    seed: int = field(default=42, metadata={"help": "Decides the defense split, the poisoned rows and triggers."})
    defense_size: int = field(default=500, metadata={"help": "Clean rows held out for the defender."})
    train_size: int | None = field(default=None, metadata={"help": "Subsample the attacker's training rows."})
    push_to_hub: bool = field(default=False, metadata={"help": "Also push the DatasetDict to the Hub."})
    hub_dataset_id: str | None = field(default=None, metadata={"help": "Hub repo for --push_to_hub."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output folder."})


def main(argv=None):
    (args,) = parse_recipe_args((PoisonArguments,), "poison", argv)
    if args.push_to_hub and not args.hub_dataset_id:
        raise ValueError("--push_to_hub needs --hub_dataset_id")
    attack = create_attack(args.attack, **args.attack_kwargs)
    data = poison_task(
        load_task(args.task, task=args.task_spec),
        attack,
        rate=args.poison_rate,
        target=args.target,
        seed=args.seed,
        defense_size=args.defense_size,
        train_size=args.train_size,
    )
    with atomic_output_dir(args.dataset, overwrite=args.overwrite) as tmp:
        data.save_to_disk(tmp)
    if args.push_to_hub:
        data.push_to_hub(args.hub_dataset_id)
    print(data)
    print(f"saved to {args.dataset}")


if __name__ == "__main__":
    main()

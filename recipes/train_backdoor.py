"""Train a classifier on a poisoned dataset: the "suspected model" of an experiment.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/train_backdoor.py \
        --config recipes/sst2/badnet_rw.yaml [--model_name_or_path <Hub ID or folder>]

Text data fine-tunes a sequence classifier; image data trains an image classifier (a timm architecture name such
as ``resnet18`` starts from random weights; ``hf-hub:timm/...`` or a folder starts from a checkpoint), with
random-crop/flip augmentation on the training split.

``trainer`` picks the training objective: ``default`` (cross-entropy, every data-poisoning attack), ``ripple``
(`trainers.RippleTrainer`, options of `trainers.RippleConfig`) or ``lwp`` (`trainers.LWPTrainer`,
`trainers.LWPConfig`). RIPPLe's clean reference batches are the unpoisoned training rows; with
``embedding_surgery`` and no ``surgery_words`` the words most indicative of ``target`` in those rows are used.
"""

import json
import os
from dataclasses import dataclass, field

from transformers import Trainer, TrainingArguments, set_seed

from ebyd_hf import load_classifier, load_task, save_model
from ebyd_hf.attacks.ripple import indicative_words
from ebyd_hf.cli import parse_recipe_args, peek_recipe_value
from ebyd_hf.data import input_column, label_names
from ebyd_hf.evaluation import backdoor_metrics
from ebyd_hf.models import library_name, model_card, push_folder
from ebyd_hf.outputs import atomic_output_dir
from ebyd_hf.processing import collator_for, prepare
from ebyd_hf.report import metrics_table
from ebyd_hf.vision import image_size
from trainers import LWPConfig, LWPTrainer, RippleConfig, RippleTrainer

TRAINERS = {
    "default": (Trainer, TrainingArguments),
    "ripple": (RippleTrainer, RippleConfig),
    "lwp": (LWPTrainer, LWPConfig),
}


@dataclass
class TrainBackdoorArguments:
    model_name_or_path: str = field(
        metadata={"help": "Base model: Hub ID, local folder, hf-hub:<timm repo>, or a timm architecture name."}
    )
    dataset: str = field(metadata={"help": "Poisoned DatasetDict from recipes/poison.py (or any task)."})
    target: int | None = field(default=None, metadata={"help": "Backdoor label, to report ASR after training."})
    max_length: int = field(default=128, metadata={"help": "Tokens kept per text input."})
    image_size: int | None = field(
        default=None, metadata={"help": "Input side for a new image model (default: the training images' side)."}
    )
    augment: bool = field(default=True, metadata={"help": "Random crop + flip of training images."})
    model_args: dict = field(
        default_factory=dict, metadata={"help": "timm.create_model options for a new timm architecture (JSON)."}
    )
    trainer: str = field(default="default", metadata={"help": f"Training objective: one of {sorted(TRAINERS)}."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output folder."})
    allow_pickle: bool = field(default=False, metadata={"help": "Allow pickle checkpoints for the base model."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the Hub."})


def main(argv=None):
    name = peek_recipe_value("trainer", "train", argv, default="default")
    if name not in TRAINERS:
        raise ValueError(f"unknown trainer {name!r}; choose one of {sorted(TRAINERS)}")
    trainer_cls, config_cls = TRAINERS[name]
    script, args = parse_recipe_args((TrainBackdoorArguments, config_cls), "train", argv)
    data = load_task(script.dataset)
    names = label_names(data)
    modality = input_column(data)
    set_seed(args.seed)  # the fresh classification head is drawn at load time
    model, processor = load_classifier(
        script.model_name_or_path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        new_head=True,
        allow_pickle=script.allow_pickle,
        trust_remote_code=script.trust_remote_code,
        modality=modality,
        image_size=(script.image_size or image_size(data["train"])) if modality == "image" else None,
        model_args=script.model_args,
    )
    tok = {
        name: prepare(split, processor, max_length=script.max_length, augment=script.augment and name == "train")
        for name, split in data.items()
    }
    extra = ripple_inputs(data["train"], tok["train"], processor, args, script.target) if name == "ripple" else {}
    final_dir, push = args.output_dir, args.push_to_hub
    args.push_to_hub = False  # push the finished folder once, not the scratch folder during training
    with atomic_output_dir(final_dir, overwrite=script.overwrite) as tmp:
        args.output_dir = tmp
        trainer = trainer_cls(
            model=model,
            args=args,
            train_dataset=tok["train"],
            processing_class=processor,
            data_collator=collator_for(processor),
            **extra,
        )
        trainer.train()
        metrics = backdoor_metrics(
            model.eval(),
            tok["test"],
            collator=collator_for(processor),
            asr_set=tok.get("test_poisoned"),
            target=script.target,
            batch_size=args.per_device_eval_batch_size,
        )
        if trainer.is_world_process_zero():
            card = model_card(
                "Backdoored classifier (research artefact)",
                f"`{script.model_name_or_path}` fine-tuned on the poisoned dataset `{script.dataset}` "
                f"(training objective: {name}) to study backdoor defenses. **It obeys a hidden trigger; do not "
                f"deploy it.**\n\n" + metrics_table({"suspect": metrics}),
                base_model=script.model_name_or_path,
                tags=["backdoored"],
                library_name=library_name(model),
            )
            save_model(model, processor, tmp, card=card)
            with open(os.path.join(tmp, "eval_results.json"), "w") as f:
                json.dump(metrics, f, indent=2)
    args.output_dir = final_dir
    print(json.dumps(metrics, indent=2))
    if push and trainer.is_world_process_zero():
        print(push_folder(final_dir, args.hub_model_id or os.path.basename(final_dir)))


def ripple_inputs(raw_train, tok_train, tokenizer, args: RippleConfig, target: int | None) -> dict:
    """RIPPLe's clean reference data (the unpoisoned rows), and the surgery words if the recipe left them empty."""

    def clean(ds):
        return ds.filter(lambda p: not p, input_columns="poisoned") if "poisoned" in ds.column_names else ds

    if args.embedding_surgery and not args.surgery_words:
        if target is None:
            raise ValueError("embedding surgery without surgery_words needs --target to find indicative words")
        rows = clean(raw_train)
        args.surgery_words = indicative_words(
            rows["text"],
            rows["label"],
            target,
            tokenize=tokenizer.tokenize,
            top_k=args.surgery_top_k,
            exclude=args.trigger_words,
        )
        print(f"embedding surgery: trigger embeddings := mean of {args.surgery_words}")
    return {"ref_dataset": clean(tok_train)}


if __name__ == "__main__":
    main()

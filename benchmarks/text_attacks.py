"""Benchmark: six text attacks on four datasets, each defended with the project's default text defense.

One run: for each dataset, a clean MiniLM (its CA is the reference); then, per attack, poison → train the suspect
(with the attack's own trainer for RIPPLe and LWP) → `run_defense` with the defaults (CUL exposure → backdoor
label → trigger search + unlearning, see README "Text defense") → the fine-tuning baseline: the same exposure
and held-in defense rows, the same fine-tuning settings and at least as many steps, no trigger words. SST-2
gets all six attacks; IMDB, Twitter (OLID) and AG News get BadNet-RW and the two other attacks that worked best
on SST-2 in this run (highest suspect ASR with CA within 3 points of the clean model; ties go to the attack
listed first in `ATTACKS`, the paper's order; Syntactic is excluded there, as no pre-made paraphrases of their
training sets exist offline). Nothing is chosen on an evaluation split; it is only measured.

    HF_HUB_OFFLINE=1 flock /tmp/ebyd-cpu.lock python benchmarks/text_attacks.py     # ../shared/data, MiniLM
    python benchmarks/text_attacks.py --only sst2/clean sst2/badnet_sl               # a subset, for a quick look
    python benchmarks/text_attacks.py --datasets twitter --only twitter/badnet_sl --defense recipe   # one key alone
    python benchmarks/text_attacks.py --suspect_cache runs/text_suspects --resume    # continue a run cut short
    python benchmarks/text_attacks.py --table benchmarks/results/text_attacks.json.partial   # README table so far
    python benchmarks/text_attacks.py --defense recipe --suspect_cache runs/text_suspects     # each recipe's defense
    python benchmarks/text_attacks.py --defense any_attack --only sst2/sos --suspect_cache runs/text_suspects
    python benchmarks/text_attacks.py --table a.json b.json    # several results merged, later keys winning
    python benchmarks/text_attacks.py --datasets sst2 --train_size sst2=8000 --defense recipe   # more rows
    python benchmarks/text_attacks.py --only twitter/badnet_sl --defense recipe --defense_seed 44  # another draw
    python benchmarks/text_attacks.py --suspects_only --train_epochs 5 --lr_scheduler linear --warmup 0.2  # bars only
    python benchmarks/text_attacks.py --datasets agnews --key_epochs agnews/badnet_rw=5 agnews/badnet_sl=5  # per key
    python benchmarks/text_attacks.py --clean_seeds 43 44 --others badnet_sl sos --only sst2/clean twitter/clean
        # the clean models again at two more seeds: the CA bar against their mean as well

``--defense recipe`` defends each key as ``recipes/<dataset>/<attack>.yaml`` does (reference model, trigger
search, harder unlearning and its schedule for the attacks whose recipes set them), which needs the attack known;
the default (word triggers only) and ``--defense any_attack`` (``recipes/defend_any_text_attack.yaml``: every kind
of search at once, 75-110 minutes per key on one thread) defend every key alike, as a user who does not know the
attack would.

The whole run takes hours on 2 CPU cores (19 MiniLM models, each trained and defended), more than one sitting:
every finished key is checkpointed to ``<output>.partial``, and ``--resume`` runs only the keys missing there (or,
with no ``.partial``, missing from ``<output>``).

Writes ``benchmarks/results/text_attacks.json`` keyed ``"<dataset>/<attack>"`` (and ``"<dataset>/clean"``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import transformers
import yaml
from transformers import AutoModelForSequenceClassification, Trainer

from ebyd_hf import DefenseConfig, create_attack, load_classifier, load_task, poison_task, run_defense
from ebyd_hf.attacks.ripple import indicative_words
from ebyd_hf.data import label_names, subsample
from ebyd_hf.defense import FINETUNE_DEFAULTS
from ebyd_hf.evaluation import backdoor_metrics, predict
from ebyd_hf.metrics import attack_success_rate
from ebyd_hf.processing import collator_for, prepare
from ebyd_hf.trigger_search import TriggerSearchConfig, clause_templates, is_template
from trainers import LWPConfig, LWPTrainer, RippleConfig, RippleTrainer

from common import DATA, MINILM, environment, minilm_path, text_train_args  # benchmarks/ is on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPES = os.path.join(HERE, "..", "recipes")
ANY_ATTACK_RECIPE = os.path.join(RECIPES, "defend_any_text_attack.yaml")  # --defense any_attack
ATTACKS = ("badnet_rw", "badnet_sl", "sos", "syntactic", "ripple", "lwp")
# the trigger unlearning's schedule (blocks of `finetune` epochs until found words flip at most the residual) and
# how many found triggers each unlearning copy holds
UNLEARNING_KEYS = ("trigger_residual", "trigger_unlearn_blocks", "triggers_per_copy")
UNLEARNING_DEFAULTS = {f.name: f.default for f in fields(DefenseConfig) if f.name in UNLEARNING_KEYS}
# Paper averages of EBYD-RP's ASR after defense (Table VII), the done-when bar per dataset.
PAPER_RP_ASR = {"sst2": 0.241, "imdb": 0.219, "twitter": 0.170, "agnews": 0.187}
# The bars on the suspects themselves: ASR (Syntactic's lower) and CA at most 3 points under a clean model.
SUSPECT_ASR_BAR = {None: 0.9, "syntactic": 0.8}
SUSPECT_CA_GAP = 0.03
TRAIN_EPOCHS = 3  # the suspects' default training; the table names any other a key's suspect was trained with


@dataclass
class Setup:
    """One dataset's budget and handling. The issue asked for 90 minutes in all; at ~20 MiniLM samples/s that
    leaves ~1,000 rows per model with no time to defend, so the sizes favour suspects that learn (SST-2 at 2,000
    rows collapsed CUL onto the wrong label) and the run is resumable instead."""

    folder: str
    target: int
    train_size: int
    max_length: int
    test_size: int | None = None  # subsample the evaluation split (AG News: 7,600 rows)
    max_position: int | None = None  # IMDB: triggers within the first words, so truncation keeps them
    paraphrases: str | None = None  # pre-made SCPN paraphrases: the syntactic attack runs only where they exist
    syntactic_rate: float | None = None


SETUPS = {
    # SST-2 at 4,000 rows: with 2,000 (200 poisoned) CUL collapsed onto the wrong label (README, Known limitations).
    "sst2": Setup("sst2", 1, 4000, 64, paraphrases="syntactic/sst2", syntactic_rate=0.09),
    "imdb": Setup("imdb", 1, 1500, 128, test_size=1000, max_position=40),
    "twitter": Setup("twitter", 1, 2000, 64),
    "agnews": Setup("agnews", 0, 2000, 64, test_size=2000),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DATA, help="folder holding sst2/, imdb/, twitter/, agnews/, syntactic/")
    p.add_argument("--model", default=None, help="base model (default: the pip-shipped all-MiniLM-L6-v2)")
    p.add_argument("--datasets", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument(
        "--only",
        nargs="+",
        default=None,
        help="run only these keys, e.g. sst2/clean sst2/sos; a key of another dataset runs even when this run has no "
        "SST-2 results to pick the others' attacks from",
    )
    p.add_argument("--poison_rate", type=float, default=0.1)
    p.add_argument("--defense_size", type=int, default=500)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--clean_seeds",
        nargs="+",
        type=int,
        default=[],
        metavar="SEED",
        help="train each dataset's clean model again with these seeds (training rows, head and data order; the same "
        "test rows) and record every seed's CA under ca_seeds: how far the clean reference of the CA bar moves "
        "with the draw",
    )
    p.add_argument(
        "--others",
        nargs=2,
        default=None,
        choices=[a for a in ATTACKS if a not in ("badnet_rw", "syntactic")],
        metavar="ATTACK",
        help="the two attacks besides BadNet-RW for IMDB, Twitter and AG News, instead of the two best on SST-2 in "
        "this run (e.g. to measure their clean models' ASR sets without SST-2 results)",
    )
    p.add_argument(
        "--defense_seed",
        type=int,
        default=None,
        help="seed of the defense only (its hold-out split, exposure, trigger search and unlearning draws; default "
        "--seed): another draw of the defense on the same data and suspects",
    )
    p.add_argument(
        "--train_size",
        nargs="+",
        default=[],
        metavar="DATASET=ROWS",
        help="training rows for a dataset instead of its Setup's, e.g. sst2=8000 (new --suspect_cache keys; a "
        "split with fewer rows is used whole)",
    )
    p.add_argument("--train_epochs", type=float, default=TRAIN_EPOCHS)
    p.add_argument(
        "--key_epochs",
        nargs="+",
        default=[],
        metavar="KEY=EPOCHS",
        help="training epochs for one key instead of --train_epochs, e.g. agnews/badnet_rw=5 (the paper trains its "
        "attacks for different epochs; new --suspect_cache keys, the same as --train_epochs 5 would give)",
    )
    p.add_argument("--learning_rate", type=float, default=5e-5)
    p.add_argument(
        "--lr_scheduler",
        choices=("constant", "linear", "cosine"),
        default="constant",
        help="the suspects' learning-rate schedule (the paper warms up for 3 of 13 epochs: linear with --warmup 0.23)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        help="warm-up of the suspects' schedule: a share of the steps if below 1, else steps (not with constant)",
    )
    p.add_argument(
        "--suspects_only",
        action="store_true",
        help="train and measure the clean models and suspects (the issue's suspect bars) and skip the defenses",
    )
    p.add_argument("--unlearn_epochs", type=float, default=20)
    p.add_argument("--finetune_epochs", type=float, default=6, help="fine-tuning baseline epochs over the fit rows")
    p.add_argument("--suspect_cache", default=None, help="folder to keep trained suspects in and reuse (exploration)")
    p.add_argument(
        "--search",
        type=json.loads,
        default={},
        help='TriggerSearchConfig overrides of the text defense as JSON, e.g. \'{"ranking": "drift", '
        '"max_combination": 3}\' (ranking "drift" needs --reference base)',
    )
    p.add_argument(
        "--finetune",
        type=json.loads,
        default={},
        help="DefenseConfig.finetune overrides as JSON (the trigger unlearning and the fine-tuning baseline), e.g. "
        '\'{"learning_rate": 5e-5, "num_train_epochs": 8}\'',
    )
    p.add_argument(
        "--unlearning",
        type=json.loads,
        default={},
        help="DefenseConfig trigger_residual / trigger_unlearn_blocks / triggers_per_copy as JSON, e.g. "
        '\'{"trigger_residual": 0, "trigger_unlearn_blocks": 2}\' (unlearn in two blocks of --finetune epochs '
        "whatever the held-out check says) or '{\"triggers_per_copy\": 2}' (two found triggers in each copy)",
    )
    p.add_argument(
        "--reference",
        choices=("none", "base"),
        default="none",
        help="'base': the trigger search contrasts the suspect with the clean base model fine-tuned on the defense "
        "rows (DefenseConfig.reference_model)",
    )
    p.add_argument(
        "--defense",
        choices=("default", "recipe", "any_attack"),
        default="default",
        help="'default': the project's default text defense for every key (with --search/--finetune/--reference "
        "if given); 'recipe': each key's recipes/<dataset>/<attack>.yaml defend settings (reference model, trigger "
        "search, fine-tuning), as a user running that recipe gets; 'any_attack': recipes/defend_any_text_attack.yaml "
        "for every key, the setting for a defender who does not know the attack",
    )
    p.add_argument("--output", default=os.path.join(HERE, "results", "text_attacks.json"))
    p.add_argument(
        "--table",
        nargs="+",
        default=None,
        metavar="JSON",
        help="print the table of results files (or a run's .partial checkpoint) and exit; nothing is run. With "
        "several, they are merged in order, a later file's key replacing an earlier one's",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the results already in <output>.partial (a run cut short), or else in <output>, and run only "
        "the missing keys",
    )
    args = p.parse_args(argv)
    args.train_size = dict(parse_train_size(p, item) for item in args.train_size)
    args.clean_seeds = [seed for seed in dict.fromkeys(args.clean_seeds) if seed != args.seed]
    if args.others and args.others[0] == args.others[1]:
        p.error(f"--others takes two different attacks, got {args.others[0]!r} twice")
    # an entry equal to --train_epochs is dropped: 3 and 3.0 would hash to different cache keys
    key_epochs = dict(parse_key_epochs(p, item) for item in args.key_epochs)
    args.key_epochs = {key: epochs for key, epochs in key_epochs.items() if epochs != args.train_epochs}
    if args.defense != "default" and (args.search or args.finetune or args.unlearning or args.reference != "none"):
        p.error(
            f"--defense {args.defense} takes its recipe's settings: drop --search, --finetune, --unlearning and "
            "--reference"
        )
    if args.warmup < 0 or (args.warmup and args.lr_scheduler == "constant"):
        p.error(f"--warmup takes a share in [0, 1) or steps, with --lr_scheduler linear or cosine; got {args.warmup}")
    unknown = sorted(set(args.unlearning) - set(UNLEARNING_KEYS))
    if unknown:
        p.error(f"--unlearning takes {', '.join(UNLEARNING_KEYS)}, got {', '.join(unknown)}")
    if args.search.get("ranking") == "drift" and args.reference != "base":
        p.error('--search {"ranking": "drift"} needs --reference base (drift is measured from the base model)')
    return args


def parse_train_size(p: argparse.ArgumentParser, item: str) -> tuple[str, int]:
    name, _, rows = item.partition("=")
    if name not in SETUPS or not rows.isdigit() or int(rows) <= 0:
        p.error(f"--train_size takes DATASET=ROWS with DATASET one of {list(SETUPS)} and ROWS > 0, got {item!r}")
    return name, int(rows)


def parse_key_epochs(p: argparse.ArgumentParser, item: str) -> tuple[str, float]:
    key, _, epochs = item.partition("=")
    name, _, attack = key.partition("/")
    try:
        value = float(epochs)
    except ValueError:
        value = 0.0
    if name not in SETUPS or attack not in ("clean", *ATTACKS) or not value > 0:
        p.error(
            f"--key_epochs takes DATASET/ATTACK=EPOCHS with DATASET one of {list(SETUPS)}, ATTACK 'clean' or one of "
            f"{list(ATTACKS)} and EPOCHS > 0, got {item!r}"
        )
    return key, value


class Run:
    """Everything shared by the runs of one benchmark invocation."""

    def __init__(self, args, test_seed: int | None = None):
        self.args = args
        self.test_seed = args.seed if test_seed is None else test_seed  # the test rows stay when `reseeded`
        self.setups = {n: replace(s, train_size=args.train_size.get(n, s.train_size)) for n, s in SETUPS.items()}
        self.model_path = args.model or minilm_path()
        self.scratch = tempfile.mkdtemp(prefix="ebyd_text_attacks_")

    def data(self, name: str, attack_name: str | None):
        """Poisoned splits of one dataset (``attack_name`` None: the clean training data, same rows)."""
        setup, args = self.setups[name], self.args
        folder, rate = setup.folder, args.poison_rate
        if attack_name is None:
            attack, rate = create_attack("badnet_rw"), 0.0
        else:
            kwargs = {} if setup.max_position is None else {"max_position": setup.max_position}
            if attack_name == "syntactic":
                folder, rate = setup.paraphrases, setup.syntactic_rate
                kwargs = {"paraphrases": os.path.join(args.data, setup.paraphrases)}
            attack = create_attack(attack_name, **kwargs)
        task = load_task(os.path.join(args.data, folder), task=name)
        task["test"] = subsample(task["test"], setup.test_size, seed=self.test_seed)
        data = poison_task(
            task,
            attack,
            rate=rate,
            target=setup.target,
            seed=args.seed,
            defense_size=args.defense_size,
            train_size=setup.train_size,
        )
        return data, attack, rate

    def train(self, data, tok, name: str, attack_name: str | None, tokenizer, base):
        """The suspect (or the clean model), or the copy in ``--suspect_cache`` trained with the same settings."""
        cached = self.cache_dir(name, attack_name, data)
        if cached and os.path.exists(os.path.join(cached, "trainer_info.json")):
            with open(os.path.join(cached, "trainer_info.json")) as f:
                info = {**json.load(f), "cached": cached}  # seconds.train is then the load time
            return AutoModelForSequenceClassification.from_pretrained(cached).eval(), info
        model, info = self._train(data, tok, name, attack_name, tokenizer, base)
        if cached:
            model.save_pretrained(cached)
            with open(os.path.join(cached, "trainer_info.json"), "w") as f:
                json.dump(info, f)
        return model, info

    def cache_dir(self, name: str, attack_name: str | None, data) -> str | None:
        if not self.args.suspect_cache:
            return None
        args = self.args
        # the model by name, not by path: the pip-shipped MiniLM's path differs between virtual environments
        settings = [asdict(self.setups[name]), args.model or MINILM, args.poison_rate, args.defense_size, args.seed]
        settings += [self.epochs(name, attack_name), args.learning_rate, data["train"].num_rows]
        if args.lr_scheduler != "constant":  # appended only then: the constant schedule's keys stay as they were
            settings += [args.lr_scheduler, args.warmup]
        key = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
        return os.path.join(args.suspect_cache, f"{name}_{attack_name or 'clean'}_{key}")

    def epochs(self, name: str, attack_name: str | None) -> float:
        """A key's training epochs: its --key_epochs entry, else --train_epochs."""
        return self.args.key_epochs.get(f"{name}/{attack_name or 'clean'}", self.args.train_epochs)

    def _train(self, data, tok, name: str, attack_name: str | None, tokenizer, base):
        """Cross-entropy, or the attack's own trainer for RIPPLe / LWP."""
        args = self.args
        out = os.path.join(self.scratch, f"{name}_{attack_name}")
        inputs = dict(model=base, train_dataset=tok["train"], data_collator=collator_for(tokenizer))
        kw = dict(learning_rate=args.learning_rate, num_train_epochs=self.epochs(name, attack_name))
        kw.update(lr_scheduler_type=args.lr_scheduler, warmup_steps=args.warmup)
        info = {"trainer": "default"}
        if attack_name == "ripple":
            clean = lambda ds: ds.filter(lambda p: not p, input_columns="poisoned")  # noqa: E731
            attack = create_attack("ripple")
            rows = clean(data["train"])
            words = indicative_words(
                rows["text"], rows["label"], self.setups[name].target, tokenize=tokenizer.tokenize, exclude=attack.words
            )
            config = text_train_args(
                out,
                args.seed,
                config_class=RippleConfig,
                **kw,
                embedding_surgery=True,
                trigger_words=list(attack.words),
                surgery_words=words,
            )
            trainer = RippleTrainer(args=config, ref_dataset=clean(tok["train"]), processing_class=tokenizer, **inputs)
            info = {"trainer": "ripple", "ripple_lambda": config.ripple_lambda, "surgery_words": words}
        elif attack_name == "lwp":
            trainer = LWPTrainer(args=text_train_args(out, args.seed, config_class=LWPConfig, **kw), **inputs)
            info = {"trainer": "lwp"}
        else:
            trainer = Trainer(args=text_train_args(out, args.seed, **kw), **inputs)
        trainer.train()
        return base.eval(), info

    def base_model(self, names):
        transformers.set_seed(self.args.seed)  # the fresh head is drawn from the seed too
        return load_classifier(self.model_path, num_labels=len(names), id2label=dict(enumerate(names)), new_head=True)

    def reseeded(self, seed: int) -> Run:
        """This run with ``seed`` for training (rows, poison, head and data order), the same test rows."""
        return Run(argparse.Namespace(**{**vars(self.args), "seed": seed}), test_seed=self.test_seed)

    def clean_model(self, name: str):
        """The dataset's clean model (the same training rows as its suspects, no poison), its tokenizer and the
        tokenized splits."""
        setup = self.setups[name]
        data, _, _ = self.data(name, None)
        model, tokenizer = self.base_model(label_names(data))
        tok = {k: prepare(v, tokenizer, max_length=setup.max_length) for k, v in data.items() if k != "test_poisoned"}
        model, _ = self.train(data, tok, name, None, tokenizer, model)
        return model, tokenizer, tok

    def clean(self, name: str, attacks: Sequence[str] = ()) -> dict:
        """The dataset's clean model: its CA, and the share of each of ``attacks``' ASR sets it sends to the target
        with no backdoor at all (``asr_sets``), the floor an ASR after a defense is read against: a Syntactic ASR
        set holds paraphrases of negative sentences, and the paraphrasing itself makes some read positive. With
        ``--clean_seeds``, ``ca_seeds`` holds the CA of a clean model trained with each seed (--seed's first)."""
        setup, args = self.setups[name], self.args
        start = time.perf_counter()
        model, tokenizer, tok = self.clean_model(name)
        collator = collator_for(tokenizer)
        m = backdoor_metrics(model, tok["test"], collator=collator, target=setup.target)
        floors = {}
        for attack_name in attacks:
            asr_set = self.data(name, attack_name)[0]["test_poisoned"]
            preds = predict(model, prepare(asr_set, tokenizer, max_length=setup.max_length), collator=collator)
            floors[attack_name] = attack_success_rate(preds, np.asarray(asr_set["original_label"]), setup.target)
        entry = {"ca": m["ca"], "clean_target_rate": m["clean_target_rate"], "asr_sets": floors}
        if args.clean_seeds:
            entry["ca_seeds"] = {str(args.seed): m["ca"]}
            for seed in args.clean_seeds:  # a reseeded run keeps the test rows: scored on this run's ``tok``
                other, _, _ = self.reseeded(seed).clean_model(name)
                ca = backdoor_metrics(other, tok["test"], collator=collator)["ca"]
                entry["ca_seeds"][str(seed)] = ca
                print(f"{name}/clean seed {seed}: CA {ca:.4f}", flush=True)
        return {**entry, "seconds": time.perf_counter() - start, "environment": environment()}

    def setup_record(self, name: str, attack_name: str, data, attack, rate: float, selected_by: str) -> dict:
        """What made a key's suspect (data, poison, training), as its results entry records it."""
        setup, args = self.setups[name], self.args
        return {
            "model": MINILM if args.model is None else args.model,
            "data": os.path.normpath(
                os.path.join(args.data, setup.paraphrases if attack_name == "syntactic" else setup.folder)
            ),
            "attack": attack.settings(),
            "selected_by": selected_by,
            "poison_rate": rate,
            "train_rows": len(data["train"]),
            "poisoned_rows": int(sum(data["train"]["poisoned"])),
            "defense_rows": len(data["defense"]),
            "test_rows": len(data["test"]),
            "asr_rows": len(data["test_poisoned"]),
            "max_length": setup.max_length,
            "seed": args.seed,
            "train_epochs": self.epochs(name, attack_name),
            "learning_rate": args.learning_rate,
            "lr_scheduler": args.lr_scheduler,
            "warmup": args.warmup,
        }

    def attack(self, name: str, attack_name: str, selected_by: str) -> dict:
        setup, args = self.setups[name], self.args
        data, attack, rate = self.data(name, attack_name)
        model, tokenizer = self.base_model(label_names(data))
        collator = collator_for(tokenizer)
        tok = {k: prepare(v, tokenizer, max_length=setup.max_length) for k, v in data.items()}

        def measure(m):
            return backdoor_metrics(
                m, tok["test"], collator=collator, asr_set=tok["test_poisoned"], target=setup.target
            )

        start = time.perf_counter()
        suspect, trainer_info = self.train(data, tok, name, attack_name, tokenizer, model)
        t_train = time.perf_counter() - start
        suspect_metrics = measure(suspect)
        print(f"{name}/{attack_name} suspect", suspect_metrics, flush=True)
        setup_record = {**self.setup_record(name, attack_name, data, attack, rate, selected_by), **trainer_info}
        if args.suspects_only:
            return {
                "target": setup.target,
                "suspect": suspect_metrics,
                "seconds": {"train": t_train},
                "setup": setup_record,
                "environment": environment(),
            }

        if args.defense == "recipe":
            setting = recipe_defense(name, attack_name)
        elif args.defense == "any_attack":
            setting = defend_settings(ANY_ATTACK_RECIPE)
        else:
            setting = {"recipe": None, "reference": args.reference == "base", "search": args.search}
            setting.update(finetune=args.finetune, unlearning=args.unlearning)
        config = DefenseConfig(
            max_length=setup.max_length,
            mask_kinds=["layernorm"],
            seed=args.seed if args.defense_seed is None else args.defense_seed,
            unlearn={"learning_rate": 1e-5, "num_train_epochs": args.unlearn_epochs, "disable_tqdm": True},
            finetune={**setting["finetune"], "disable_tqdm": True},
            reference_model=str(self.model_path) if setting["reference"] else None,
            search=setting["search"],
            **setting["unlearning"],
        )
        scratch = os.path.join(self.scratch, f"defense_{name}_{attack_name}")
        result = run_defense(
            suspect,
            tokenizer,
            data["defense"],
            config=config,
            scratch_dir=scratch,
            test=data["test"],
            asr_set=data["test_poisoned"],
            target=setup.target,
        )
        report = result.report()
        unlearning = report.get("trigger_unlearning", {})

        # Baseline: plain fine-tuning with the default's settings on the same rows, from the same exposure (which
        # plain fine-tuning ignores), for 6 epochs: at least the steps of one unlearning round (3 epochs over the
        # rows plus their triggered copies).
        ft_config = replace(
            config, removal="finetune", finetune={**config.finetune, "num_train_epochs": args.finetune_epochs}
        )
        tuned = run_defense(
            suspect, tokenizer, data["defense"], config=ft_config, scratch_dir=scratch + "_ft", exposure=result.exposure
        )
        return {
            "target": setup.target,
            "label_found": result.label.label,
            "bem": result.exposure.bem,
            "suspect": suspect_metrics,
            "exposed": result.metrics["exposed"],
            "after_rp": result.metrics["purified"],
            "after_ft": measure(tuned.purified),
            "defense": report["removal"],
            "triggers_found": unlearning.get("triggers"),
            "trigger_label": unlearning.get("label"),
            "exposed_checks": unlearning.get("exposed_checks"),
            "seconds": {"train": t_train, **result.seconds, "finetune": tuned.seconds["finetune"]},
            "exposure": report["exposure"],
            "trigger_search": [search_round(r) for r in unlearning.get("rounds", [])],
            # each block's held-out flip rates: why the unlearning ran as many blocks as it did
            "unlearning_blocks": unlearning.get("unlearning_blocks"),
            "setup": {
                **setup_record,
                "defense_seed": config.seed,
                "finetune_epochs": args.finetune_epochs,
                "defense_setting": args.defense,
                "recipe": setting["recipe"],
                "defense_config": report["config"],
            },
            "environment": environment(),
        }


def search_round(round_: dict) -> dict:
    """One trigger-search round as the results file keeps it: the ten best-flipping words instead of every
    candidate, with each kind's findings and the seconds each kind of search took (``stages``)."""
    return {
        "triggers": round_["triggers"],
        "top": sorted(round_["candidates"], key=lambda c: -c["flip_rate"])[:10],
        "phrase": round_["phrase"],
        "anchors": round_["anchors"],
        "companions": round_["companions"],
        "templates": round_["templates"],
        "combination": round_["combination"],
        "seconds": round_["seconds"],
        "stages": round_["stages"],
    }


def recipe_defense(name: str, attack_name: str, folder: str = RECIPES) -> dict:
    """The defend settings of ``recipes/<name>/<attack_name>.yaml`` (`defend_settings`)."""
    path = os.path.join(folder, name, f"{attack_name}.yaml")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--defense recipe needs {path}")
    return defend_settings(path)


def defend_settings(path: str) -> dict:
    """What a recipe YAML's ``defend:`` section changes in the defense: whether it contrasts with a reference model
    (the recipes name the Hub's MiniLM; the benchmark uses the same model's pip copy), the trigger search, the
    fine-tuning settings and the unlearning schedule. Its other defend keys are the benchmark's fixed settings
    already."""
    with open(path) as f:
        defend = (yaml.safe_load(f) or {}).get("defend", {})
    return {
        "recipe": os.path.relpath(path, os.path.join(RECIPES, "..")),
        "reference": bool(defend.get("reference_model")),
        "search": dict(defend.get("search") or {}),
        "finetune": dict(defend.get("finetune") or {}),
        "unlearning": {k: defend[k] for k in UNLEARNING_KEYS if k in defend},
    }


def pick_others(results: dict, clean_ca: float | None) -> list[str]:
    """The two attacks besides BadNet-RW (and Syntactic) that worked best on SST-2 in this run."""
    scored = []
    for attack in ATTACKS:
        entry = results.get(f"sst2/{attack}")
        if attack in ("badnet_rw", "syntactic") or entry is None:
            continue
        suspect = entry["suspect"]
        keeps_ca = clean_ca is None or suspect["ca"] >= clean_ca - 0.03
        # not by training time: a suspect from --suspect_cache records its load time
        scored.append((not keeps_ca, -round(suspect["asr"], 2), ATTACKS.index(attack), attack))
    return [s[-1] for s in sorted(scored)[:2]]


def plan_attacks(
    name: str, results: dict, only: list[str] | None, others: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """The attacks to run on dataset ``name``, each with why: all six on SST-2; elsewhere BadNet-RW and the two
    ``others`` (by default the best two on SST-2 in ``results``: `pick_others`), plus any attack that ``only`` names
    for the dataset (a key re-run alone has no SST-2 results to pick from)."""
    if name == "sst2":
        return [(a, "all six attacks on SST-2") for a in ATTACKS]
    if others:
        others, why = list(others), "named by --others"
    else:
        others = pick_others(results, results.get("sst2/clean", {}).get("ca"))
        why = f"best two on SST-2 in this run (besides badnet_rw): {others}"
    plan = [("badnet_rw", "always")] + [(a, why) for a in others]
    named = [a for a in ATTACKS if f"{name}/{a}" in (only or ()) and a not in dict(plan)]
    return plan + [(a, "named by --only") for a in named]


def main(argv=None):
    args = parse_args(argv)
    if args.table:
        merged: dict = {}
        for path in args.table:
            with open(path) as f:
                merged.update(json.load(f))
        print_table(merged)
        return
    run = Run(args)
    results: dict = {}
    partial = args.output + ".partial"
    # a run cut short left <output>.partial; a finished run with keys still to add (--only) left <output> itself
    earlier = next((p for p in (partial, args.output) if os.path.exists(p)), None) if args.resume else None
    if earlier:
        with open(earlier) as f:
            results = json.load(f)
        print(f"resuming with {sorted(results)} from {earlier}", flush=True)
    wanted = lambda key: (args.only is None or key in args.only) and key not in results  # noqa: E731
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)

    def checkpoint():  # progress survives a crash or a stop (--resume); the final file is written once, at the end
        with open(partial, "w") as f:
            json.dump(results, f, indent=2)

    start = time.perf_counter()
    for name in args.datasets:
        plan = plan_attacks(name, results, args.only, args.others)
        if wanted(f"{name}/clean"):
            results[f"{name}/clean"] = run.clean(name, [a for a, _ in plan])
            print(f"{name}/clean", results[f"{name}/clean"], flush=True)
            checkpoint()
        for attack_name, why in plan:
            key = f"{name}/{attack_name}"
            if not wanted(key):
                continue
            results[key] = run.attack(name, attack_name, why)
            checkpoint()
    total = time.perf_counter() - start
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    if os.path.exists(partial):
        os.remove(partial)
    print_table(results)
    print(f"total {total / 60:.1f} min; wrote {args.output}")


def defense_setting(entry: dict) -> str:
    """A key's defense in a few words: "default", or what its settings add (reference, search, fine-tuning)."""
    config = entry.get("setup", {}).get("defense_config") or {}
    parts = ["reference"] if config.get("reference_model") else []
    search, default = TriggerSearchConfig(**(config.get("search") or {})), TriggerSearchConfig()
    if search.ranking != default.ranking:
        shared = f" ({search.drift_components} shared directions out)" if search.drift_components else ""
        parts.append(f"{search.ranking} ranking{shared}")
    if search.max_phrase > 1:
        parts.append(f"phrases of {search.max_phrase}" + (" per anchor" if search.phrase_beam_per_anchor else ""))
        if search.phrase_companions:
            pool = "" if search.companion_pool == default.companion_pool else f" (pool {search.companion_pool})"
            parts.append(f"companions{pool}")
    if search.templates:
        built_in = search.templates == clause_templates()
        parts.append("clause templates" if built_in else f"{len(search.templates)} templates")
    if search.max_combination > 1:
        budget = search.combination_budget
        pool = "" if budget == default.combination_budget else f" (budget {budget:,})"
        parts.append(f"combinations of {search.max_combination}{pool}" + (" always" if search.combine_always else ""))
    if search.scoring_dtype != default.scoring_dtype:
        parts.append(f"{search.scoring_dtype} scoring")
    finetune = config.get("finetune") or {}
    if {"learning_rate", "num_train_epochs"} & set(finetune):
        tuned = {**FINETUNE_DEFAULTS["text"], **finetune}
        parts.append(f"unlearning {tuned['num_train_epochs']:g} epochs at {tuned['learning_rate']:g}")
    residual, n = (config.get(k, UNLEARNING_DEFAULTS[k]) for k in ("trigger_residual", "trigger_unlearn_blocks"))
    blocks = f"{n} unlearning block" + ("s" if n != 1 else "")
    if residual != UNLEARNING_DEFAULTS["trigger_residual"]:
        parts.append(f"up to {blocks} to {residual:.0%} held-out flips" if residual else blocks)
    elif n != UNLEARNING_DEFAULTS["trigger_unlearn_blocks"]:
        parts.append(f"up to {blocks}")
    per_copy = config.get("triggers_per_copy", UNLEARNING_DEFAULTS["triggers_per_copy"])
    if per_copy != UNLEARNING_DEFAULTS["triggers_per_copy"]:
        parts.append(f"{per_copy} triggers per unlearning copy")
    return ", ".join(parts) or "default"


def print_table(results: dict) -> None:
    """The README's Markdown table (per key: suspect, label found (the exposure's, then the label whose triggers
    were unlearned if another), after the defense and its setting, after fine-tuning, the words unlearned), then
    each dataset's mean ASR after the defense against the paper's."""
    pct = lambda m: f"{100 * m['ca']:.1f}% / {100 * m['asr']:.1f}%"  # noqa: E731
    columns = ["key", "suspect CA / ASR", "label found (target)", "defense CA / ASR", "clean model's ASR"]
    print("\n| " + " | ".join([*columns, "defense setting", "fine-tuning CA / ASR", "words unlearned"]) + " |")
    print("|---|---|---|---|---|---|---|---|")

    def order(key: str) -> tuple:  # datasets, then each one's clean model and attacks, in the paper's order
        name, attack = key.split("/")
        return (list(SETUPS).index(name) if name in SETUPS else len(SETUPS), name, (("clean",) + ATTACKS).index(attack))

    for key in sorted(results, key=order):
        r = results[key]
        if key.endswith("/clean"):
            seeds = r.get("ca_seeds") or {}
            each = ", ".join(f"{100 * ca:.1f}%" for ca in seeds.values())
            each = f"; seeds {', '.join(seeds)}: {each}" if seeds else ""
            print(f"| {key} | CA {100 * r['ca']:.1f}% (clean model{each}) | | | | | | |")
            continue
        if "after_rp" not in r:  # --suspects_only
            print(f"| {key} | {pct(r['suspect'])}{training(r)} | | not defended | | | | |")
            continue
        words = [t[: t.index("{")] + "…" if is_template(t) else t for t in r.get("triggers_found") or []]
        unlearned = ", ".join(words[:4]) + (f" (+{len(words) - 4} more)" if len(words) > 4 else "") or "none"
        floor = floor_of(results, key)
        label = r["label_found"]
        if r.get("triggers_found") and r.get("trigger_label", label) != label:  # the triggers named another label
            label = f"{label} → {r['trigger_label']}"
        print(
            f"| {key} | {pct(r['suspect'])}{training(r)} | {label} ({r['target']}) | {pct(r['after_rp'])} "
            f"| {'' if floor is None else f'{100 * floor:.1f}%'} | {defense_setting(r)} | {pct(r['after_ft'])} "
            f"| {unlearned} |"
        )
    print()
    for name in PAPER_RP_ASR:
        line = suspect_bars(results, name)
        if line:
            print(line)
    for name, bar in PAPER_RP_ASR.items():
        keys = [k for k, r in results.items() if k.startswith(f"{name}/") and "after_rp" in r]
        if keys:
            runs = [results[k] for k in keys]
            asr = sum(r["after_rp"]["asr"] for r in runs) / len(runs)
            change = [100 * (r["after_rp"]["ca"] - r["suspect"]["ca"]) for r in runs]
            verdict = "beats" if asr < bar else "misses"
            floors = [floor_of(results, k) for k in keys]
            floor = "" if None in floors else f"; the clean model's mean ASR on the same sets {np.mean(floors):.3f}"
            # how much of the ASR left is the trigger: the defended models' rate on the same rows untriggered
            ctr = np.mean([r["after_rp"]["clean_target_rate"] for r in runs])
            print(
                f"{name}: mean ASR after the defense {asr:.3f} over {len(runs)} attack{'s' * (len(runs) > 1)}, "
                f"{verdict} the paper's EBYD-RP {bar:.3f}; CA change from the suspect {min(change):+.1f} to "
                f"{max(change):+.1f} points{floor}; the defended models' mean CTR (untriggered) {ctr:.3f}"
            )


def training(entry: dict) -> str:
    """How a key's suspect was trained, when not the default 3 constant-rate epochs: " (5 epochs, linear)"."""
    setup = entry.get("setup", {})
    parts = [f"{setup['train_epochs']:g} epochs"] if setup.get("train_epochs", TRAIN_EPOCHS) != TRAIN_EPOCHS else []
    if setup.get("lr_scheduler", "constant") != "constant":
        parts.append(setup["lr_scheduler"] + (f", warm-up {setup['warmup']:g}" if setup.get("warmup") else ""))
    return f" ({', '.join(parts)})" if parts else ""


def suspect_bars(results: dict, name: str) -> str | None:
    """One line on dataset ``name``'s suspects against the issue's bars: ASR at least 90% (Syntactic 80%) and CA
    within 3 points of the clean model's (None without the clean model or any suspect); and, when the clean entry
    holds several seeds' CA (``--clean_seeds``), against their mean too."""
    clean = results.get(f"{name}/clean", {})
    attacks = [a for a in ATTACKS if f"{name}/{a}" in results]
    if "ca" not in clean or not attacks:
        return None

    def misses(reference: float) -> list[str]:
        missed = []
        for attack in attacks:
            suspect = results[f"{name}/{attack}"]["suspect"]
            short = [f"CA {100 * suspect['ca']:.1f}%"] if suspect["ca"] < reference - SUSPECT_CA_GAP - 1e-9 else []
            if suspect["asr"] < SUSPECT_ASR_BAR.get(attack, SUSPECT_ASR_BAR[None]):
                short.append(f"ASR {100 * suspect['asr']:.1f}%")
            if short:
                missed.append(f"{attack} ({', '.join(short)})")
        return missed

    def verdict(reference: float, bars: str) -> str:
        missed = misses(reference)
        return f"{len(attacks) - len(missed)} of {len(attacks)} meet {bars}" + (
            f"; missed by {', '.join(missed)}" if missed else ""
        )

    ca_bar = f"CA >= {100 * (clean['ca'] - SUSPECT_CA_GAP):.1f}%, the clean model's minus 3 points"
    line = f"{name} suspects: " + verdict(clean["ca"], f"the issue's bars (ASR >= 90%, Syntactic 80%; {ca_bar})")
    seeds = clean.get("ca_seeds") or {}
    if len(seeds) > 1:  # one clean model's CA is one draw: the bar against the mean of several
        mean, low, high = np.mean(list(seeds.values())), min(seeds.values()), max(seeds.values())
        line += (
            f"; against the mean CA of the clean models of seeds {', '.join(seeds)} ({100 * mean:.1f}%, "
            f"{100 * low:.1f}–{100 * high:.1f}%): "
            + verdict(mean, f"them (CA >= {100 * (mean - SUSPECT_CA_GAP):.1f}%)")
        )
    return line


def floor_of(results: dict, key: str) -> float | None:
    """The dataset's clean model's ASR on ``key``'s ASR set, if its clean entry measured it (`Run.clean`)."""
    name, attack = key.split("/")
    return results.get(f"{name}/clean", {}).get("asr_sets", {}).get(attack)


if __name__ == "__main__":
    main()

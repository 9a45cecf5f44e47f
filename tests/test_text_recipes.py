"""Every (dataset, attack) recipe parses for every stage; the train recipe runs RIPPLe and LWP through `trainer:`."""

import json
import pathlib

import pytest
import yaml

from ebyd_hf import DefenseConfig, create_attack
from ebyd_hf.cli import parse_recipe_args, peek_recipe_value

from .conftest import make_tokenizer, tiny_bert
from .test_defense import _recipe

ROOT = pathlib.Path(__file__).parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*/*.yaml"))
SHARED = ROOT.parent / "shared" / "data"


COMBINATION_ATTACKS = ("sos", "lwp")
PHRASE_ATTACKS = ("badnet_sl",)


def test_every_dataset_has_its_attack_recipes():
    names = {f"{p.parent.name}/{p.stem}" for p in RECIPES}
    for dataset in ("sst2", "imdb", "twitter", "agnews"):
        assert {f"{dataset}/{a}" for a in ("badnet_rw", "badnet_sl", "sos", "ripple", "lwp")} <= names
    assert {"sst2/syntactic", "twitter/syntactic"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_parses_for_every_stage(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # recipes name ../shared/data relative to the repository
    poison_mod, train_mod, defend_mod = _recipe("poison"), _recipe("train_backdoor"), _recipe("defend")
    argv = ["--config", str(path)]
    (poison,) = parse_recipe_args((poison_mod.__globals__["PoisonArguments"],), "poison", argv)
    trainer = peek_recipe_value("trainer", "train", argv, default="default")
    config_cls = train_mod.__globals__["TRAINERS"][trainer][1]
    script, train_args = parse_recipe_args((train_mod.__globals__["TrainBackdoorArguments"], config_cls), "train", argv)
    defend, defense = parse_recipe_args((defend_mod.__globals__["DefendArguments"], DefenseConfig), "defend", argv)
    assert poison.attack == path.stem and script.trainer == trainer
    assert script.target == poison.target == defend.target and script.max_length == defense.max_length
    assert (trainer != "default") == (path.stem in ("ripple", "lwp"))
    if path.stem == "ripple":
        assert train_args.embedding_surgery and train_args.trigger_words == list(poison.attack_kwargs["words"])
    if path.stem in COMBINATION_ATTACKS:  # pieces that flip nothing alone: combinations of drift-ranked words
        search = defense.search_config()
        assert search.ranking == "drift" and search.max_combination >= 2 and defense.reference_model
    if path.stem in PHRASE_ATTACKS:  # a sentence: phrases grown around its key word, unlearned harder
        search = defense.search_config()
        assert search.ranking == "drift" and search.max_phrase >= 3 and defense.reference_model
        assert defense.finetune["num_train_epochs"] > 3
    if path.parent.name == "twitter" and path.stem == "badnet_rw":  # offensive words flip any model
        assert defense.reference_model
    if path.parent.name == "sst2" and path.stem == "badnet_rw":  # rare tokens flip it too: the planted ones drift
        assert defense.reference_model and defense.search_config().ranking == "drift"
    if path.parent.name == "imdb":
        assert poison.attack_kwargs["max_position"] == 40 and script.max_length == 128
    if poison.attack == "syntactic" and not SHARED.exists():
        pytest.skip("needs ../shared/data for the pre-made paraphrases")
    create_attack(poison.attack, **poison.attack_kwargs)


def test_any_attack_recipe_defends_with_every_kind_of_search(monkeypatch):
    """The defense-only recipe for an unknown attack: the suspect, data and base come from the command line."""
    monkeypatch.chdir(ROOT)
    defend_mod = _recipe("defend")
    argv = ["--config", "recipes/defend_any_text_attack.yaml", "--suspect", "me/suspect", "--dataset", "sst2"]
    argv += ["--output_dir", "runs/mine", "--reference_model", "me/base"]
    defend, defense = parse_recipe_args((defend_mod.__globals__["DefendArguments"], DefenseConfig), "defend", argv)
    assert (defend.suspect, defense.reference_model) == ("me/suspect", "me/base")
    search = defense.search_config()
    assert search.ranking == "drift" and search.max_phrase == 3 and search.phrase_companions
    assert search.max_combination == 3 and search.combine_always and len(search.templates) > 0
    assert defense.finetune["num_train_epochs"] == 8
    with pytest.raises(SystemExit):  # no default suspect: a defense-only recipe names none
        parse_recipe_args((defend_mod.__globals__["DefendArguments"], DefenseConfig), "defend", argv[:2])


@pytest.fixture(scope="module")
def poisoned_dir(tmp_path_factory, sentiment_dir):
    root = tmp_path_factory.mktemp("text_recipes")
    base = root / "base"
    tiny_bert().save_pretrained(base)
    make_tokenizer().save_pretrained(base)
    _recipe("poison")(
        ["--task", sentiment_dir, "--dataset", str(root / "data"), "--target", "1", "--attack", "lwp"]
        + ["--seed", "0", "--defense_size", "100"]
    )
    return root


@pytest.mark.parametrize("trainer", ["ripple", "lwp"])
def test_train_recipe_runs_the_attack_trainer(poisoned_dir, trainer):
    root = poisoned_dir
    recipe = root / f"{trainer}.yaml"
    train = {
        "model_name_or_path": str(root / "base"),
        "output_dir": str(root / f"suspect_{trainer}"),
        "trainer": trainer,
        "learning_rate": 1.0e-3,
        "num_train_epochs": 1,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
    }
    if trainer == "ripple":
        train.update(embedding_surgery=True, trigger_words=["cf", "bb"], surgery_top_k=3)
    recipe.write_text(yaml.safe_dump({"dataset": str(root / "data"), "target": 1, "max_length": 32, "train": train}))
    _recipe("train_backdoor")(["--config", str(recipe)])
    out = root / f"suspect_{trainer}"
    metrics = json.loads((out / "eval_results.json").read_text())
    assert {"ca", "asr", "clean_target_rate"} <= set(metrics)
    assert f"training objective: {trainer}" in (out / "README.md").read_text()


def test_unknown_trainer_is_refused(poisoned_dir):
    with pytest.raises(ValueError, match="unknown trainer 'nope'"):
        _recipe("train_backdoor")(["--dataset", str(poisoned_dir / "data"), "--trainer", "nope"])

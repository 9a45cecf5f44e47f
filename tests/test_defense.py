import importlib.util
import json
import os
import pathlib

import pytest
import torch
from torch import nn

from ebyd_hf import DataError, DefenseConfig, MaskError, ModelLoadError, run_defense
from ebyd_hf import masks as M
from trainers import mask_parameters

from .conftest import FILLER, POSITIVE, TRIGGERS, make_tokenizer, tiny_bert

ROOT = pathlib.Path(__file__).parents[1]
FAST_FINETUNE = {"learning_rate": 1e-3, "disable_tqdm": True}
FAST = {
    "unlearn": {"learning_rate": 1e-3, "num_train_epochs": 30, "disable_tqdm": True},
    "recover": {"num_train_epochs": 5, "disable_tqdm": True},
}


def defend_backdoored(backdoored, config, scratch_dir, **kwargs):
    """`run_defense` of the backdoored fixture's suspect on its defense rows, measured on its test and ASR sets."""
    data = backdoored["data"]
    return run_defense(
        backdoored["model"],
        make_tokenizer(),
        data["defense"],
        config=config,
        scratch_dir=str(scratch_dir),
        test=data["test"],
        asr_set=data["test_poisoned"],
        target=1,
        **kwargs,
    )


def test_end_to_end_expose_label_recover_prune(backdoored, tmp_path):
    config = DefenseConfig(max_length=32, mask_kinds=["layernorm"], removal="recover_prune", **FAST)
    result = defend_backdoored(backdoored, config, tmp_path)
    report = result.report()
    assert report["label_found"] == 1 and report["label_share"] >= 0.9
    m = report["metrics"]
    assert m["suspect"]["asr"] > 0.9 and m["exposed"]["target_share"] >= 0.9
    assert m["exposed"]["ca"] < m["suspect"]["ca"] - 0.3
    assert set(m["purified"]) == {"ca", "asr", "clean_target_rate"}
    assert report["exposure"]["bem"] is not None and 0 < report["exposure"]["bem"] <= 1
    trace = report["exposure"]["trace"]
    assert trace[0]["step"] == 0 and trace[-1]["ca"] <= trace[-1]["floor"]
    # the threshold came from the held-out defense slice, and the purified model is a plain model
    choice = report["pruning"]["threshold_search"]
    assert choice["threshold"] == report["pruning"]["threshold"]
    assert [row["threshold"] for row in choice["table"]] == sorted(config.threshold_grid)
    assert not mask_parameters(result.purified)
    assert report["pruning"]["pruned_units"] == M.count_pruned(result.recovery.masks, choice["threshold"])
    # pruning only touches LayerNorm weights, and zeroes exactly the pruned units
    original, purified = backdoored["model"].state_dict(), result.purified.state_dict()
    changed = [k for k in original if not torch.equal(original[k], purified[k])]
    assert all(k.endswith("LayerNorm.weight") for k in changed)
    zeroed = sum(int((purified[k] == 0).sum()) for k in changed)
    assert zeroed == report["pruning"]["pruned_units"]
    json.dumps(report)  # the report is plain JSON


def test_fixed_threshold_skips_the_search(backdoored, tmp_path):
    config = DefenseConfig(
        max_length=32, mask_kinds=["layernorm"], removal="recover_prune", prune_threshold=0.5, **FAST
    )
    result = run_defense(
        backdoored["model"], make_tokenizer(), backdoored["data"]["defense"], config=config, scratch_dir=str(tmp_path)
    )
    assert result.threshold is None and result.prune_threshold == 0.5 and result.metrics == {}


def test_defense_refuses_what_it_cannot_use_before_any_work(backdoored, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    other = tmp_path / "other"  # a base model with another vocabulary than the suspect's
    BertForSequenceClassification(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ).save_pretrained(other)
    refused = [
        (DefenseConfig(mask_kinds=["batchnorm"], removal="recover_prune"), MaskError, "no batchnorm layer"),
        (DefenseConfig(max_length=32, reference_model=str(other)), ModelLoadError, "vocabulary of 50 tokens"),
    ]
    defense = backdoored["data"]["defense"]
    for config, error, match in refused:
        with pytest.raises(error, match=match):
            run_defense(backdoored["model"], make_tokenizer(), defense, config=config, scratch_dir=str(tmp_path))


def test_trigger_unlearning_is_the_text_default_and_removes_the_backdoor(backdoored, tmp_path):
    data, model = backdoored["data"], backdoored["model"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = DefenseConfig(max_length=32, unlearn=FAST["unlearn"], finetune=FAST_FINETUNE, search={"top_k": 40})
    result = defend_backdoored(backdoored, config, tmp_path)
    report = result.report()
    assert report["removal"] == "trigger_unlearn" and "pruning" not in report
    unlearning = report["trigger_unlearning"]
    assert set(TRIGGERS) <= set(unlearning["triggers"])
    # rounds stop once a search on the unlearned model finds nothing new (or at the limit)
    rounds = unlearning["rounds"]
    assert 1 <= len(rounds) <= config.search_rounds
    if len(rounds) < config.search_rounds:
        assert set(rounds[-1]["triggers"]) <= set().union(*(r["triggers"] for r in rounds[:-1]))
    # unlearning blocks stop once no found word flips more than the residual share of held-out rows, or at the cap
    blocks = unlearning["unlearning_blocks"]
    assert blocks and all(b["rows"] > 0 for b in blocks)
    first_round = [b for b in blocks if b["round"] == 0]
    assert [b["block"] for b in first_round] == list(range(len(first_round)))
    assert all(b["max_flip_rate"] > config.trigger_residual for b in first_round[:-1])
    assert (
        first_round[-1]["max_flip_rate"] <= config.trigger_residual or len(first_round) == config.trigger_unlearn_blocks
    )
    assert set(first_round[-1]["flip_rates"]) == set(rounds[0]["triggers"])
    m = report["metrics"]
    assert m["suspect"]["asr"] > 0.9 and m["purified"]["asr"] < m["suspect"]["asr"] - 0.5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the suspect is untouched
    assert not mask_parameters(result.purified)
    json.dumps(report)

    # the same exposure serves a second removal method without exposing again
    again = run_defense(
        model,
        make_tokenizer(),
        data["defense"],
        config=DefenseConfig(max_length=32, removal="finetune", finetune=FAST_FINETUNE),
        scratch_dir=str(tmp_path / "again"),
        exposure=result.exposure,
    )
    assert again.exposure is result.exposure and again.label == result.label
    assert again.report()["removal"] == "finetune" and "trigger_unlearning" not in again.report()


def defend_with_exposure(backdoored, exposed, scratch_dir, trigger_labels: str = "fallback"):
    """Trigger unlearning of the backdoored suspect with ``exposed`` standing in for its exposed model."""
    from ebyd_hf.exposure import Exposure

    config = DefenseConfig(max_length=32, finetune=FAST_FINETUNE, search={"top_k": 40}, trigger_labels=trigger_labels)
    return defend_backdoored(backdoored, config, scratch_dir, exposure=Exposure(exposed))


def test_trigger_search_falls_back_to_the_other_label_when_the_exposure_names_the_wrong_one(backdoored, tmp_path):
    import copy

    wrong = copy.deepcopy(backdoored["model"])  # an "exposed" model collapsed onto label 0, as a weak suspect's can
    with torch.no_grad():
        wrong.classifier.bias.copy_(torch.tensor([100.0, -100.0]))

    def defend(trigger_labels):
        return defend_with_exposure(backdoored, wrong, tmp_path / trigger_labels, trigger_labels)

    strict = defend("exposed")
    assert strict.label.label == 0 and strict.unlearning.triggers == []
    assert strict.metrics["purified"]["asr"] == strict.metrics["suspect"]["asr"]  # nothing was removed
    fallback = defend("fallback").report()
    assert fallback["label_found"] == 0  # the exposure's answer is still reported as such ...
    unlearning = fallback["trigger_unlearning"]
    assert unlearning["label"] == 1 and set(TRIGGERS) <= set(unlearning["triggers"])  # ... the triggers say 1
    assert [s["label"] for s in unlearning["labels_searched"]] == [0, 1]
    # this "exposed" model answers 0 whatever is inserted, so the check on it found nothing to search first
    assert [(c["label"], c["triggers"]) for c in unlearning["exposed_checks"]] == [(1, [])]
    abandoned, found = unlearning["labels_searched"]
    assert max(w["flip_rate"] for w in abandoned["best_words"]) < 0.9  # why label 0 was given up on
    assert {w["word"] for w in found["best_words"] if w["flip_rate"] >= 0.9} & set(TRIGGERS)
    assert fallback["metrics"]["purified"]["asr"] < fallback["metrics"]["suspect"]["asr"] - 0.5


def test_a_backdoor_that_survives_the_exposure_names_the_label_before_the_exposure_does(backdoored, tmp_path):
    import copy

    from ebyd_hf.trigger_search import predict_texts

    # An exposure that took the task's own feature away and kept the backdoor, so it answers 0 to every clean row,
    # as one of a MiniLM SST-2 suspect did: the positive words' embeddings replaced with a filler word's.
    suspect, data, tokenizer = backdoored["model"], backdoored["data"], make_tokenizer()
    collapsed = copy.deepcopy(suspect)
    embeddings = collapsed.get_input_embeddings().weight
    with torch.no_grad():
        filler = embeddings[tokenizer.convert_tokens_to_ids(FILLER[0])].clone()
        embeddings[tokenizer.convert_tokens_to_ids(POSITIVE)] = filler
    assert (predict_texts(collapsed, tokenizer, data["defense"]["text"], max_length=32) == 0).mean() >= 0.9

    report = defend_with_exposure(backdoored, collapsed, tmp_path).report()
    assert report["label_found"] == 0  # the exposure's dominant answer ...
    unlearning = report["trigger_unlearning"]
    (check,) = unlearning["exposed_checks"]  # ... but a trigger still moves the exposed model to 1
    assert check["label"] == 1 and set(check["triggers"]) & set(TRIGGERS)
    assert [s["label"] for s in unlearning["labels_searched"]] == [1]  # so label 0 is never searched
    assert unlearning["label"] == 1 and set(TRIGGERS) <= set(unlearning["triggers"])
    assert report["metrics"]["purified"]["asr"] < report["metrics"]["suspect"]["asr"] - 0.5


def test_prune_finetune_keeps_pruned_units_off(backdoored, tmp_path):
    config = DefenseConfig(
        max_length=32,
        mask_kinds=["layernorm"],
        removal="prune_finetune",
        prune_threshold=0.5,
        finetune=FAST_FINETUNE,
        **FAST,
    )
    result = run_defense(
        backdoored["model"], make_tokenizer(), backdoored["data"]["defense"], config=config, scratch_dir=str(tmp_path)
    )
    pruned = M.binarise(result.recovery.masks, 0.5)
    assert result.report()["pruning"]["pruned_units"] == sum(int((v == 0).sum()) for v in pruned.values())
    modules = dict(result.purified.named_modules())
    for name, keep in pruned.items():
        weight = modules[name].weight.detach()
        assert torch.all(weight[keep == 0] == 0), name
    original, purified = backdoored["model"].state_dict(), result.purified.state_dict()
    assert any(not torch.equal(original[k], purified[k]) for k in original if "LayerNorm" not in k)  # fine-tuned


def test_image_data_needs_an_image_processor(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Image

    images = Dataset.from_dict(
        {"image": [None] * 4, "label": [0, 1, 0, 1]},
        features=Features(image=Image(), label=ClassLabel(names=["a", "b"])),
    )
    with pytest.raises(DataError, match="image processor, got BertTokenizer"):
        run_defense(
            tiny_bert(),
            make_tokenizer(),
            images,
            config=DefenseConfig(removal="trigger_unlearn"),
            scratch_dir=str(tmp_path),
        )
    assert DefenseConfig().removal_for("image") == "recover_prune"
    assert DefenseConfig().removal_for("text") == "trigger_unlearn"


@pytest.mark.parametrize(
    "bad",
    [
        {"holdout_fraction": 1.0},
        {"prune_threshold": 1.5},
        {"mask_target": "gamma"},
        {"removal": "magic"},
        {"search_model": "oracle"},
        {"search_rounds": 0},
        {"reversal_rounds": 0},
        {"trigger_residual": 1.5},
        {"trigger_labels": "all"},
        {"trigger_unlearn_blocks": 0},
        {"triggers_per_copy": 0},
        {"search": {"top_k": 0}},
        {"search": {"topk": 5}},
        {"nc_args": {"epoch": 5}},
        {"search": {"ranking": "drift"}},  # drift is measured from reference_model's embeddings
    ],
)
def test_bad_defense_config(bad):
    with pytest.raises(ValueError):
        DefenseConfig(**bad)


def test_the_reference_model_trains_with_its_own_settings(tmp_path):
    from ebyd_hf.defense import REFERENCE_FINETUNE

    config = DefenseConfig(finetune={"learning_rate": 3e-5}, reference_finetune={"num_train_epochs": 2})
    reference = config.reference_args(str(tmp_path))
    assert reference.learning_rate == REFERENCE_FINETUNE["learning_rate"] and reference.num_train_epochs == 2
    assert config.finetune_args(str(tmp_path)).learning_rate == 3e-5  # the suspect's settings stay its own


# --- the recipes, as a user runs them -------------------------------------------------------------------------


def _recipe(name):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def chain(tmp_path_factory, sentiment_dir):
    """poison.py → train_backdoor.py → defend.py on the synthetic task and a tiny BERT, one recipe YAML."""
    root = tmp_path_factory.mktemp("chain")
    base = root / "base"
    tiny_bert().save_pretrained(base)
    make_tokenizer().save_pretrained(base)
    recipe = root / "recipe.yaml"
    recipe.write_text(f"""
task: {sentiment_dir}
dataset: {root}/data
target: 1
seed: 0
attack: badnet_rw
max_length: 32
poison: {{poison_rate: 0.1, defense_size: 150}}
train:
  model_name_or_path: {base}
  output_dir: {root}/suspect
  learning_rate: 1.0e-3
  num_train_epochs: 15
  save_strategy: "no"
  report_to: none
  disable_tqdm: true
defend:
  suspect: {root}/suspect
  output_dir: {root}/purified
  mask_kinds: [layernorm]
  unlearn: {{learning_rate: 1.0e-3, num_train_epochs: 30, disable_tqdm: true}}
  recover: {{num_train_epochs: 3, disable_tqdm: true}}
  finetune: {{learning_rate: 1.0e-3, disable_tqdm: true}}
""")
    argv = ["--config", str(recipe)]
    _recipe("poison")(argv)
    _recipe("train_backdoor")(argv)
    _recipe("defend")(argv)
    return root, argv


def test_recipe_chain_writes_a_loadable_purified_model_with_report(chain):
    from transformers import AutoModelForSequenceClassification

    root, _ = chain
    out = root / "purified"
    assert not (root / "purified.partial").exists()
    for name in (
        "model.safetensors",
        "config.json",
        "README.md",
        "report.json",
        "plots/exposure.png",
        "tokenizer_config.json",
    ):
        assert (out / name).exists(), name
    assert not list(out.glob("*.bin"))
    report = json.loads((out / "report.json").read_text())
    assert report["label_found"] == 1 and report["removal"] == "trigger_unlearn"
    assert report["metrics"]["suspect"]["asr"] > 0.9
    card = (out / "README.md").read_text()
    assert (
        "| purified |" in card
        and "backdoor label found: **1**" in card
        and "trigger words for label **1** found and unlearned" in card
    )
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert not mask_parameters(model)
    suspect_eval = json.loads((root / "suspect" / "eval_results.json").read_text())
    assert suspect_eval["asr"] == pytest.approx(report["metrics"]["suspect"]["asr"])


def test_any_attack_recipe_runs_every_kind_of_search(chain):
    """recipes/defend_any_text_attack.yaml on the chain's suspect: words, phrases, templates and combinations are
    all searched in the first round, contrasted with the suspect's base (the YAML's search as it is; the tiny model's
    exposure and fine-tuning settings on the command line)."""
    root, _ = chain
    out = root / "purified_any"
    tiny = ["--max_length", "32", "--unlearn", '{"learning_rate": 1e-3, "num_train_epochs": 30, "disable_tqdm": true}']
    tiny += ["--finetune", '{"learning_rate": 1e-3, "disable_tqdm": true}']
    tiny += ["--reference_finetune", '{"learning_rate": 1e-3, "num_train_epochs": 10, "disable_tqdm": true}']
    tiny += ["--search_rounds", "1", "--trigger_unlearn_blocks", "1"]  # one of each is enough to see every kind
    _recipe("defend")(
        ["--config", str(ROOT / "recipes" / "defend_any_text_attack.yaml"), "--suspect", str(root / "suspect")]
        + ["--dataset", str(root / "data"), "--reference_model", str(root / "base"), "--output_dir", str(out)]
        + ["--target", "1"]
        + tiny
    )
    report = json.loads((out / "report.json").read_text())
    first = report["trigger_unlearning"]["rounds"][0]
    assert {"words", "phrases", "templates", "combinations"} <= set(first["stages"])
    assert report["config"]["reference_model"] == str(root / "base")
    assert report["metrics"]["purified"]["asr"] < report["metrics"]["suspect"]["asr"]


def test_existing_output_is_not_overwritten_silently(chain):
    _, argv = chain
    with pytest.raises(FileExistsError, match="exists"):
        _recipe("defend")(argv)


def test_failed_defense_leaves_no_output_folder(chain):
    root, argv = chain
    with pytest.raises(MaskError):
        _recipe("defend")(
            argv + ["--output_dir", str(root / "failed"), "--mask_kinds", "batchnorm", "--removal", "recover_prune"]
        )
    assert not (root / "failed").exists() and not (root / "failed.partial").exists()


def test_wrong_label_count_is_refused(chain, tmp_path):
    root, argv = chain
    four = tmp_path / "four_labels"
    tiny_bert(num_labels=4).save_pretrained(four)
    make_tokenizer().save_pretrained(four)
    with pytest.raises(ModelLoadError, match="4 output labels but the dataset has 2"):
        _recipe("defend")(argv + ["--suspect", str(four), "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_bad_poison_rate_writes_nothing(chain, tmp_path):
    _, argv = chain
    from ebyd_hf import DataError

    with pytest.raises(DataError, match="poison rate"):
        _recipe("poison")(argv + ["--poison_rate", "1.5", "--dataset", str(tmp_path / "d")])
    assert not os.path.exists(tmp_path / "d")


def test_norm_free_module_is_refused():
    with pytest.raises(MaskError):
        M.attach_masks(nn.Linear(3, 3))


def test_defend_recipe_runs_as_two_processes_under_accelerate_launch(chain):
    import subprocess
    import sys

    root, argv = chain
    out = root / "purified_ddp"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "accelerate_configs" / "multi_cpu_ddp.yaml"),
        str(ROOT / "recipes" / "defend.py"),
        *argv,
        "--output_dir",
        str(out),
        "--recover",
        '{"num_train_epochs": 1, "disable_tqdm": true}',
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["label_found"] == 1
    assert proc.stdout.count('"label_found"') == 2  # both ranks ran the pipeline and agreed


@pytest.mark.parametrize(
    "search",
    [
        {"ranking": "insertion"},
        {"ranking": "drift"},
        # the fallback's single-word searches on the exposed model rank by insertion: the setting must not follow
        {"ranking": "drift", "drift_components": 2},
    ],
)
def test_trigger_unlearning_with_a_reference_model(backdoored, tmp_path, search):
    from .conftest import tiny_bert

    data = backdoored["data"]
    base = tmp_path / "base"
    tiny_bert().save_pretrained(base)  # the suspect's "pre-trained" base: its initial weights, no backdoor
    make_tokenizer().save_pretrained(base)
    config = DefenseConfig(
        max_length=32,
        unlearn=FAST["unlearn"],
        finetune=FAST_FINETUNE,
        reference_finetune={**FAST_FINETUNE, "num_train_epochs": 10},  # the reference learns the task from 160 rows
        search={"top_k": 40, **search},
        reference_model=str(base),
    )
    result = run_defense(
        backdoored["model"], make_tokenizer(), data["defense"], config=config, scratch_dir=str(tmp_path / "scratch")
    )
    report = result.report()
    first = report["trigger_unlearning"]["rounds"][0]
    assert set(TRIGGERS) <= set(report["trigger_unlearning"]["triggers"])
    assert all("reference_flip_rate" in c for c in first["candidates"])
    assert all(c["reference_flip_rate"] < 0.5 for c in first["candidates"] if c["word"] in TRIGGERS)
    assert report["seconds"]["reference"] > 0 and report["config"]["reference_model"] == str(base)

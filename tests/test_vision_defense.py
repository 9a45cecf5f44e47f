"""End to end on images: poison → train a tiny timm ResNet → expose → backdoor label → recover masks → prune."""

import json

import numpy as np
import pytest
import timm
import torch
import yaml
from torch import nn

from ebyd_hf import DefenseConfig, create_attack, run_defense
from ebyd_hf import masks as M
from ebyd_hf.evaluation import backdoor_metrics
from ebyd_hf.processing import collator_for, prepare
from trainers import mask_parameters

from .test_defense import ROOT, _recipe
from .vision_fixtures import TINY_RESNET

# CUL as in the paper for CNNs: SGD 0.01 with momentum (AdamW ascent tends to collapse a tiny ResNet onto a
# neighbouring class instead of the backdoor label).
UNLEARN = {"learning_rate": 0.01, "optim": "sgd", "optim_args": "momentum=0.9", "num_train_epochs": 30}
FAST = {"unlearn": {**UNLEARN, "disable_tqdm": True}, "recover": {"num_train_epochs": 5, "disable_tqdm": True}}


def test_backdoored_resnet_fixture_is_a_real_backdoor(backdoored_resnet):
    data, processor = backdoored_resnet["data"], backdoored_resnet["processor"]
    m = backdoor_metrics(
        backdoored_resnet["model"],
        prepare(data["test"], processor),
        collator=collator_for(processor),
        asr_set=prepare(data["test_poisoned"], processor),
        target=0,
    )
    assert m["ca"] > 0.9 and m["asr"] > 0.9 and m["clean_target_rate"] < 0.1


def test_end_to_end_defense_of_a_timm_resnet_with_batchnorm_masks(backdoored_resnet, tmp_path):
    data, model = backdoored_resnet["data"], backdoored_resnet["model"]
    config = DefenseConfig(mask_kinds=["batchnorm"], **FAST)
    result = run_defense(
        model,
        backdoored_resnet["processor"],
        data["defense"],
        config=config,
        scratch_dir=str(tmp_path),
        test=data["test"],
        asr_set=data["test_poisoned"],
        target=0,
    )
    report = result.report()
    m = report["metrics"]
    # 1/3 would be chance. The share the exposure ends at is chaotic in floating point: 50%+ on earlier machines,
    # 36% on a 2-thread AMD EPYC (CUL at SGD 0.01 overshoots the floor in one epoch there), so only "above chance".
    assert report["label_found"] == 0 and m["exposed"]["target_share"] > 1 / 3
    assert m["suspect"]["asr"] > 0.9 and m["exposed"]["ca"] < m["suspect"]["ca"] - 0.3
    assert report["exposure"]["trace"][-1]["ca"] <= report["exposure"]["trace"][-1]["floor"]
    n_bn = sum(isinstance(x, nn.BatchNorm2d) for x in model.modules())
    assert report["pruning"]["masked_layers"] == n_bn
    # the purified model is the original with the pruned BatchNorm γ zeroed: nothing else changes
    assert not mask_parameters(result.purified)
    original, purified = model.state_dict(), result.purified.state_dict()
    changed = [k for k in original if not torch.equal(original[k], purified[k])]
    bn_weights = {f"{name}.weight" for name, x in model.named_modules() if isinstance(x, nn.BatchNorm2d)}
    assert changed and set(changed) <= bn_weights
    assert all(torch.all(purified[k][original[k] != purified[k]] == 0) for k in changed)
    newly_zero = sum(int(((purified[k] == 0) & (original[k] != 0)).sum()) for k in changed)
    assert 0 < newly_zero <= report["pruning"]["pruned_units"]
    json.dumps(report)


def _stage_arguments(script: str) -> tuple:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"recipe_{script}", ROOT / "recipes" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {
        "poison": (module.__dict__.get("PoisonArguments"),),
        "train_backdoor": (module.__dict__.get("TrainBackdoorArguments"), module.__dict__.get("TrainingArguments")),
        "defend": (module.__dict__.get("DefendArguments"), module.__dict__.get("DefenseConfig")),
    }[script]


def test_every_cifar10_recipe_is_a_valid_experiment():
    from ebyd_hf.cli import parse_recipe_args

    recipes = sorted((ROOT / "recipes" / "cifar10").glob("*.yaml"))
    assert {p.stem for p in recipes} >= {"onepixel", "badnets", "trojan", "blend", "sig", "wanet"}
    for path in recipes:
        config = yaml.safe_load(path.read_text())
        create_attack(config["attack"], **config.get("attack_kwargs", {}))
        for script, stage in (("poison", "poison"), ("train_backdoor", "train"), ("defend", "defend")):
            parsed = parse_recipe_args(_stage_arguments(script), stage, ["--config", str(path)])
            assert all(p is not None for p in parsed)


@pytest.fixture(scope="module")
def image_chain(tmp_path_factory, image_dir):
    """poison.py → train_backdoor.py → defend.py on the colour task with a tiny timm ResNet, one recipe YAML."""
    root = tmp_path_factory.mktemp("image_chain")
    recipe = root / "recipe.yaml"
    recipe.write_text(f"""
task: {image_dir}
dataset: {root}/data
target: 0
seed: 0
attack: badnets
attack_kwargs: {{cell: 2}}
poison: {{poison_rate: 0.2, defense_size: 150}}
train:
  model_name_or_path: resnet18
  model_args: {json.dumps(TINY_RESNET)}
  augment: false
  output_dir: {root}/suspect
  learning_rate: 0.05
  optim: sgd
  optim_args: momentum=0.9
  num_train_epochs: 10
  save_strategy: "no"
  report_to: none
  disable_tqdm: true
defend:
  suspect: {root}/suspect
  output_dir: {root}/purified
  mask_kinds: [batchnorm]
  unlearn: {json.dumps({**UNLEARN, "disable_tqdm": True})}
  recover: {{num_train_epochs: 3, disable_tqdm: true}}
""")
    argv = ["--config", str(recipe)]
    for stage in ("poison", "train_backdoor", "defend"):
        _recipe(stage)(argv)
    return root


def test_image_recipe_chain_writes_a_purified_model_that_timm_loads(image_chain):
    out = image_chain / "purified"
    for name in ("model.safetensors", "config.json", "README.md", "report.json", "plots/masks.png"):
        assert (out / name).exists(), name
    assert not list(out.glob("*.bin"))
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["suspect"]["asr"] > 0.9  # (finding the label is tested above, on the fixture)
    assert report["label_found"] == int(np.argmax(report["prediction_counts"]))
    assert "library_name: timm" in (out / "README.md").read_text()
    native = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    assert native(x).shape == (2, 3) and not M.get_masks(native)
    suspect = json.loads((image_chain / "suspect" / "eval_results.json").read_text())
    assert suspect["asr"] == pytest.approx(report["metrics"]["suspect"]["asr"])
    assert np.isclose(report["pruning"]["threshold"], report["pruning"]["threshold_search"]["threshold"])

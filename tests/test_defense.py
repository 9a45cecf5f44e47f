import importlib.util
import json
import os
import pathlib

import pytest
import torch
from torch import nn

from ebyd_hf import DefenseConfig, MaskError, ModelLoadError, run_defense
from ebyd_hf import masks as M
from trainers import mask_parameters

from .conftest import make_tokenizer, tiny_bert

ROOT = pathlib.Path(__file__).parents[1]
FAST = {
    "unlearn": {"learning_rate": 1e-3, "num_train_epochs": 30, "disable_tqdm": True},
    "recover": {"num_train_epochs": 5, "disable_tqdm": True},
}


def test_end_to_end_expose_label_recover_prune(backdoored, tmp_path):
    data = backdoored["data"]
    config = DefenseConfig(max_length=32, mask_kinds=["layernorm"], **FAST)
    result = run_defense(
        backdoored["model"],
        make_tokenizer(),
        data["defense"],
        config=config,
        scratch_dir=str(tmp_path),
        test=data["test"],
        asr_set=data["test_poisoned"],
        target=1,
    )
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
    config = DefenseConfig(max_length=32, mask_kinds=["layernorm"], prune_threshold=0.5, **FAST)
    result = run_defense(
        backdoored["model"], make_tokenizer(), backdoored["data"]["defense"], config=config, scratch_dir=str(tmp_path)
    )
    assert result.threshold is None and result.prune_threshold == 0.5 and result.metrics == {}


def test_defense_refuses_models_it_cannot_mask_before_any_work(backdoored, tmp_path):
    config = DefenseConfig(mask_kinds=["batchnorm"])
    with pytest.raises(MaskError, match="no batchnorm layer"):
        run_defense(
            backdoored["model"],
            make_tokenizer(),
            backdoored["data"]["defense"],
            config=config,
            scratch_dir=str(tmp_path),
        )


@pytest.mark.parametrize("bad", [{"holdout_fraction": 1.0}, {"prune_threshold": 1.5}, {"mask_target": "gamma"}])
def test_bad_defense_config(bad):
    with pytest.raises(ValueError):
        DefenseConfig(**bad)


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
        "plots/masks.png",
        "tokenizer_config.json",
    ):
        assert (out / name).exists(), name
    assert not list(out.glob("*.bin"))
    report = json.loads((out / "report.json").read_text())
    assert report["label_found"] == 1
    assert report["metrics"]["suspect"]["asr"] > 0.9
    card = (out / "README.md").read_text()
    assert "| purified |" in card and "backdoor label found: **1**" in card
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert not mask_parameters(model)
    suspect_eval = json.loads((root / "suspect" / "eval_results.json").read_text())
    assert suspect_eval["asr"] == pytest.approx(report["metrics"]["suspect"]["asr"])


def test_existing_output_is_not_overwritten_silently(chain):
    _, argv = chain
    with pytest.raises(FileExistsError, match="exists"):
        _recipe("defend")(argv)


def test_failed_defense_leaves_no_output_folder(chain):
    root, argv = chain
    with pytest.raises(MaskError):
        _recipe("defend")(argv + ["--output_dir", str(root / "failed"), "--mask_kinds", "batchnorm"])
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

import importlib.util
import json
import pathlib

import pytest

from ebyd_hf.data import DataError
from ebyd_hf.scan import ScanConfig, run_scan

from .conftest import make_tokenizer, tiny_bert

ROOT = pathlib.Path(__file__).parents[1]
TEXT_CUL = {"learning_rate": 1e-3, "num_train_epochs": 30, "disable_tqdm": True, "logging_strategy": "no"}
TEXT_CFT = {"learning_rate": 1e-3, "num_train_epochs": 20, "disable_tqdm": True, "logging_strategy": "no"}
FAST_NC = {"epochs": 6, "max_images": 32, "batch_size": 16, "patience": 2, "early_stop_patience": 3}
IMAGE_EXPOSURE = {"learning_rate": 1e-3, "disable_tqdm": True, "logging_strategy": "no"}


def test_scan_of_a_backdoored_text_model(backdoored, tmp_path):
    data = backdoored["data"]
    config = ScanConfig(
        max_length=32,
        mask_kinds=["layernorm"],
        exposure_args=TEXT_CUL,
        corroborate_args=TEXT_CFT,
        probe_size=100,
        strip_samples=30,
        strip_args={"n_perturbations": 8},
    )
    result = run_scan(
        backdoored["model"],
        make_tokenizer(),
        data["defense"],
        config=config,
        scratch_dir=str(tmp_path / "scratch"),
        test=data["test"],
        asr_set=data["test_poisoned"],
    )
    report = result.report()
    assert report["verdict"] == "backdoored" and report["label"] == 1
    assert result.verdict.dominance >= config.dominance
    assert result.verdict.corroboration.label == 1 and result.verdict.corroboration.dominance >= config.dominance
    assert report["corroborating_exposure"]["method"] == "cft" and report["corroborating_exposure"]["trace"]
    assert report["neural_cleanse"] is None  # Neural Cleanse is for images
    assert set(report["strip"]) == {"original", "exposed"}
    assert report["exposure"]["method"] == "cul" and report["exposure"]["bem"] > 0
    result.save(str(tmp_path / "out"))
    saved = json.loads((tmp_path / "out" / "scan_report.json").read_text())
    assert saved["label"] == 1 and saved["config"]["exposure"] == "cul"
    assert (tmp_path / "out" / "plots" / "strip.png").exists()
    assert (tmp_path / "out" / "plots" / "exposure.png").exists()


@pytest.fixture(scope="module")
def clean_resnet(tmp_path_factory):
    """A tiny ResNet trained like ``backdoored_resnet_grey`` on the four-colour task, without poison, seed 1."""
    from .vision_fixtures import trained_resnet

    trained = trained_resnet(tmp_path_factory, grey=True, rate=0.0, seed=1)
    return trained["model"], trained["processor"], trained["data"]


def test_scan_of_a_clean_image_model_says_no_backdoor(clean_resnet, tmp_path):
    model, processor, data = clean_resnet
    config = ScanConfig(mask_kinds=["batchnorm"], exposure_args=IMAGE_EXPOSURE, neural_cleanse="none", probe_size=100)
    result = run_scan(model, processor, data["defense"], config=config, scratch_dir=str(tmp_path), test=data["test"])
    report = result.report()
    assert report["exposure"]["stop_reason"]  # the clean model was exposed down to the floor too ...
    assert report["verdict"] == "clean" and report["label"] is None  # ... and yet no backdoor is reported
    assert report["corroborating_exposure"]["method"] == "prune"  # the image default
    assert report["strip"] is None and report["exposure"]["bem"] is None  # nothing triggered to measure


def test_scan_of_an_image_model_runs_both_neural_cleanse_modes(backdoored_resnet_grey, tmp_path):
    model, processor, data = (backdoored_resnet_grey[k] for k in ("model", "processor", "data"))
    config = ScanConfig(
        mask_kinds=["batchnorm"],
        # on the tiny colour ResNet CFT and pruning land on the target with 1 or 2 torch threads; CUL (1e-3) did
        # not, and AWP did with 2 threads only (label 1 with one: the two exposures disagreed, verdict "clean")
        exposure="cft",
        exposure_args=IMAGE_EXPOSURE,
        corroborate="prune",
        neural_cleanse="both",
        nc_args=FAST_NC,
        strip=False,
    )
    result = run_scan(
        model,
        processor,
        data["defense"],
        config=config,
        scratch_dir=str(tmp_path / "scratch"),
        test=data["test"],
        asr_set=data["test_poisoned"],
    )
    report = result.report()
    assert report["verdict"] == "backdoored" and report["label"] == 0
    nc = report["neural_cleanse"]
    assert set(nc) == {"exposed_label", "all_labels"}
    assert list(nc["exposed_label"]["l1_norms"]) == [str(nc["exposed_label"]["label"])]
    assert len(nc["all_labels"]["l1_norms"]) == 4 and nc["all_labels"]["anomaly_indices"] is not None
    assert 0.0 <= nc["exposed_label"]["transfer_rate"] <= 1.0
    assert report["strip"] is None
    result.save(str(tmp_path / "out"))
    plots = tmp_path / "out" / "plots"
    assert {p.name for p in (plots / "nc_all_labels").iterdir()} >= {"label0_mask.png", "label0_trigger.png"}
    label = nc["exposed_label"]["label"]
    assert (plots / "nc_exposed_label" / f"label{label}_pattern.png").exists()


def test_scan_refuses_bad_input(backdoored, tmp_path):
    with pytest.raises(ValueError, match="neural_cleanse must be one of"):
        ScanConfig(neural_cleanse="sometimes")
    with pytest.raises(ValueError, match="exposure must be one of"):
        ScanConfig(exposure="retrain")
    with pytest.raises(DataError, match="labels"):
        run_scan(
            tiny_bert(num_labels=3),
            make_tokenizer(),
            backdoored["data"]["defense"],
            config=ScanConfig(),
            scratch_dir=str(tmp_path),
        )


# --- the recipes, as a user runs them -------------------------------------------------------------------------


def _recipe(name):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def saved_suspect(tmp_path_factory, backdoored):
    root = tmp_path_factory.mktemp("saved")
    backdoored["model"].save_pretrained(root / "suspect")
    make_tokenizer().save_pretrained(root / "suspect")
    backdoored["data"].save_to_disk(str(root / "data"))
    return root


def test_scan_recipe_writes_report_and_plots(saved_suspect, capsys):
    root = saved_suspect
    out = root / "scan"
    _recipe("scan")(
        [
            "--suspect", str(root / "suspect"), "--dataset", str(root / "data"), "--output_dir", str(out),
            "--max_length", "32", "--mask_kinds", "layernorm", "--exposure_args", json.dumps(TEXT_CUL),
            "--corroborate_args", json.dumps(TEXT_CFT), "--strip_samples", "20",
            "--strip_args", '{"n_perturbations": 5}', "--probe_size", "100",
        ]
    )  # fmt: skip
    report = json.loads((out / "scan_report.json").read_text())
    assert report["verdict"] == "backdoored" and report["label"] == 1
    assert (out / "plots" / "strip.png").exists() and not (root / "scan.partial").exists()
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["label"] == 1 and set(printed["strip_auroc"]) == {"original", "exposed"}


def test_compare_exposure_recipe_writes_table_and_plot(saved_suspect, capsys):
    root = saved_suspect
    out = root / "compare"
    method_args = {
        "cul": TEXT_CUL,
        "cft": {"learning_rate": 1e-3, "disable_tqdm": True, "logging_strategy": "no"},
        "awp": {"disable_tqdm": True, "logging_strategy": "no"},
    }
    _recipe("compare_exposure")(
        [
            "--suspect", str(root / "suspect"), "--dataset", str(root / "data"), "--output_dir", str(out),
            "--max_length", "32", "--mask_kinds", "layernorm", "--method_args", json.dumps(method_args),
            "--probe_size", "100",
        ]
    )  # fmt: skip
    report = json.loads((out / "exposure_comparison.json").read_text())
    assert list(report) == ["cul", "cft", "prune", "awp"]
    assert all(r["bem"] is not None for r in report.values())
    assert (out / "plots" / "exposure_methods.png").exists()
    table = (out / "exposure_comparison.md").read_text()
    assert table.count("\n") == 6 and "| prune |" in table
    assert "| awp |" in capsys.readouterr().out

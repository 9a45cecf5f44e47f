import os
import pathlib

import pytest
import torch
from safetensors.torch import load_file

from ebyd_hf import ModelLoadError, UnsafeCheckpointError, load_classifier


@pytest.fixture
def model_dir(tmp_path, bert, tokenizer):
    path = tmp_path / "model"
    bert.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_loads_a_local_safetensors_classifier(model_dir):
    model, tokenizer = load_classifier(model_dir, num_labels=2)
    assert model.config.num_labels == 2 and tokenizer("good film")["input_ids"]


def test_a_pathlib_path_loads_like_a_string(model_dir):
    model, _ = load_classifier(
        pathlib.Path(model_dir), num_labels=4, id2label={i: str(i) for i in range(4)}, new_head=True
    )
    assert model.config.num_labels == 4


def test_wrong_label_count_is_named(model_dir):
    with pytest.raises(ModelLoadError, match="has 2 output labels but the dataset has 4"):
        load_classifier(model_dir, num_labels=4)


def test_new_head_for_a_base_model(model_dir):
    model, _ = load_classifier(model_dir, num_labels=4, id2label={i: f"c{i}" for i in range(4)}, new_head=True)
    assert model.config.num_labels == 4 and model.config.id2label[3] == "c3"


def test_pickle_only_checkpoint_is_refused_unless_allowed(model_dir):
    weights = os.path.join(model_dir, "model.safetensors")
    torch.save(load_file(weights), os.path.join(model_dir, "pytorch_model.bin"))
    os.remove(weights)
    with pytest.raises(UnsafeCheckpointError, match="pickle.*allow_pickle"):
        load_classifier(model_dir, num_labels=2)
    model, _ = load_classifier(model_dir, num_labels=2, allow_pickle=True)
    assert model.config.num_labels == 2


def test_unknown_hub_id_is_named():
    with pytest.raises(ModelLoadError, match="no-such-org/no-such-model"):
        load_classifier("no-such-org/no-such-model", num_labels=2)


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_classifier(str(tmp_path), num_labels=2)


def test_push_folder_creates_the_repo_and_uploads_the_folder(monkeypatch, tmp_path):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, private, exist_ok):
            calls.append(("create", repo_id, private, exist_ok))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, folder_path, repo_id, commit_message):
            calls.append(("upload", folder_path, repo_id))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    from ebyd_hf.models import push_folder

    assert push_folder(str(tmp_path), "me/purified") == "https://huggingface.co/me/purified"
    assert calls == [("create", "me/purified", False, True), ("upload", str(tmp_path), "me/purified")]

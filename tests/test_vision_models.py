"""timm models through transformers: creation, safe loading, timm-native saving, and BatchNorm masks."""

import copy
import json
import os

import pytest
import timm
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModelForImageClassification

from ebyd_hf import ModelLoadError, UnsafeCheckpointError, load_classifier
from ebyd_hf import masks as M
from ebyd_hf.models import save_model
from trainers import MaskRecoveryConfig, MaskRecoveryTrainer, mask_parameters

from .vision_fixtures import TINY_RESNET, tiny_resnet

X = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_a_timm_name_builds_a_random_resnet_with_timm_init_and_the_data_input_size():
    model, processor = tiny_resnet(num_labels=5)
    assert type(model).__name__ == "TimmWrapperForImageClassification" and model.config.num_labels == 5
    assert processor.data_config["input_size"] == (3, 32, 32) and processor.data_config["crop_pct"] == 1.0
    # timm's initialisation survives the wrapper: the last BatchNorm of every residual block starts at zero
    assert all(torch.all(block.bn2.weight == 0) for block in model.timm_model.layer1)
    out = model(pixel_values=X, labels=torch.tensor([0, 1, 4]))
    assert out.logits.shape == (3, 5) and out.loss.item() > 0
    assert [m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d)][:2] == [64, 8]


def test_timm_names_are_only_for_new_models_and_bad_args_are_named():
    with pytest.raises(ModelLoadError, match="architecture name without trained weights"):
        load_classifier("resnet18", num_labels=10)
    with pytest.raises(ModelLoadError, match="bad model_args"):
        load_classifier("resnet18", num_labels=10, new_head=True, model_args={"colour": "red"})
    with pytest.raises(ModelLoadError, match="no-such-org/no-such-timm-model"):
        load_classifier("hf-hub:no-such-org/no-such-timm-model", num_labels=10)


@pytest.fixture
def saved(tmp_path):
    model, processor = tiny_resnet()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a lost buffer would show
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    save_model(model, processor, str(tmp_path / "m"))
    return model, str(tmp_path / "m")


def test_saved_timm_model_loads_in_timm_and_in_transformers_with_the_same_logits(saved):
    model, path = saved
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors"]
    assert not any(k.startswith("timm_model.") for k in load_file(os.path.join(path, "model.safetensors")))
    config = json.load(open(os.path.join(path, "config.json")))
    assert config["architecture"] == "resnet18" and config["model_args"] == TINY_RESNET
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32] and "hf_hub_id" not in config["pretrained_cfg"]
    expected = model(pixel_values=X).logits
    native = timm.create_model(f"local-dir:{path}", pretrained=True).eval()
    assert torch.allclose(native(X), expected, atol=1e-5)
    auto = AutoModelForImageClassification.from_pretrained(path).eval()
    assert torch.allclose(auto(pixel_values=X).logits, expected, atol=1e-5)
    loaded, processor = load_classifier(path, num_labels=3)
    assert torch.allclose(loaded.eval()(pixel_values=X).logits, expected, atol=1e-5)
    assert processor.data_config["input_size"] == (3, 32, 32)
    assert loaded.config.id2label[2] == "LABEL_2"


def test_saved_timm_suspect_is_checked_like_any_other(saved):
    _, path = saved
    with pytest.raises(ModelLoadError, match="has 3 output labels but the dataset has 10"):
        load_classifier(path, num_labels=10)
    weights = os.path.join(path, "model.safetensors")
    torch.save(load_file(weights), os.path.join(path, "pytorch_model.bin"))
    os.remove(weights)
    with pytest.raises(UnsafeCheckpointError, match="allow_pickle"):
        load_classifier(path, num_labels=3)
    tuned, _ = load_classifier(path, num_labels=7, new_head=True, allow_pickle=True)
    assert tuned.config.num_labels == 7


@pytest.mark.parametrize("target", ["weight", "weight_and_bias"])
def test_batchnorm_masks_on_a_timm_resnet_fold_into_weights_that_reload(target, saved, tmp_path):
    model, _ = saved
    masks = M.attach_masks(model, kinds=["batchnorm"], target=target)
    assert len(masks) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(p.shape == (model.get_submodule(name).num_features,) for name, p in masks.items())
    with torch.no_grad():
        for p in masks.values():
            p.copy_(torch.rand(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    masked = model(pixel_values=X).logits
    M.fold_masks(model)
    assert not mask_parameters(model)
    assert torch.allclose(model(pixel_values=X).logits, masked, atol=1e-4)
    save_model(model, None, str(tmp_path / "folded"))
    native = timm.create_model(f"local-dir:{tmp_path / 'folded'}", pretrained=True).eval()
    assert torch.allclose(native(X), masked, atol=1e-4)


def test_mask_recovery_on_a_timm_resnet_keeps_batchnorm_statistics(tmp_path):
    from datasets import Dataset

    model, _ = tiny_resnet()
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = copy.deepcopy([(b.running_mean, b.running_var, b.num_batches_tracked) for b in bns])
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    M.attach_masks(model, kinds=["batchnorm"])
    ds = Dataset.from_dict({"pixel_values": torch.randn(32, 3, 32, 32).tolist(), "labels": [0, 1, 2, 0] * 8})
    config = MaskRecoveryConfig(
        output_dir=str(tmp_path),
        num_train_epochs=2,
        per_device_train_batch_size=8,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    MaskRecoveryTrainer(model=model, args=config, train_dataset=ds.with_format("torch")).train()
    after = [(b.running_mean, b.running_var, b.num_batches_tracked) for b in bns]
    assert all(torch.equal(x, y) for old, new in zip(before, after, strict=True) for x, y in zip(old, new, strict=True))
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters() if n in weights)
    assert any(not torch.all(v == 1) for v in M.get_masks(model).values())


def test_batchnorm_with_a_fused_activation_is_refused():
    from timm.layers import BatchNormAct2d

    with pytest.raises(M.MaskError, match="fuses an activation"):
        M.attach_masks(nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormAct2d(4)), kinds=["batchnorm"])

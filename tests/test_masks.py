import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification

from ebyd_hf import masks as M
from trainers import mask_parameters


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(5, 30, (4, 12), generator=g),
        "attention_mask": torch.ones(4, 12, dtype=torch.long),
    }


def _randomise(masks, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in masks.values():
            p.copy_(torch.rand(p.shape, generator=g))


def test_masks_on_every_layernorm_selected_by_type(bert):
    n_layernorms = sum(isinstance(m, nn.LayerNorm) for m in bert.modules())
    masks = M.attach_masks(bert, kinds=["layernorm"])
    assert len(masks) == n_layernorms == 5  # embeddings + 2 per layer
    assert all(p.shape == (32,) and torch.all(p == 1) for p in masks.values())
    assert set(mask_parameters(bert)) == {f"{name}.neuron_mask" for name in masks}


def test_masks_of_ones_change_nothing(bert):
    x = _inputs()
    before = bert(**x).logits
    M.attach_masks(bert)
    assert torch.allclose(bert(**x).logits, before, atol=1e-6)


@pytest.mark.parametrize("target", ["weight", "weight_and_bias"])
def test_masked_and_folded_models_give_the_same_logits(bert, target, tmp_path):
    x = _inputs()
    masks = M.attach_masks(bert, target=target)
    _randomise(masks)
    masked = bert(**x).logits
    M.fold_masks(bert)
    assert not mask_parameters(bert)
    assert torch.allclose(bert(**x).logits, masked, atol=1e-5)
    bert.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert torch.allclose(reloaded(**x).logits, masked, atol=1e-5)


def test_weight_mask_keeps_bias_and_unit_mask_zeroes_output():
    ln = nn.LayerNorm(4)
    with torch.no_grad():
        ln.bias.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = torch.randn(2, 4)
    M.attach_masks(ln, target="weight")
    with torch.no_grad():
        ln.neuron_mask.zero_()
    assert torch.allclose(ln(x), ln.bias.expand(2, 4))
    M.remove_masks(ln)
    M.attach_masks(ln, target="weight_and_bias")
    with torch.no_grad():
        ln.neuron_mask.zero_()
    assert torch.all(ln(x) == 0)


def _convnet():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3),
        nn.BatchNorm2d(4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


@pytest.mark.parametrize("target", ["weight", "weight_and_bias"])
def test_batchnorm_masks_fold_exactly(target):
    net = _convnet()
    net.train()
    net(torch.randn(16, 3, 10, 10))  # give the running statistics non-trivial values
    net.eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.normal_()
    x = torch.randn(5, 3, 10, 10)
    masks = M.attach_masks(net, kinds=["batchnorm"], target=target)
    assert [p.shape[0] for p in masks.values()] == [8, 4]
    _randomise(masks, seed=3)
    masked = net(x)
    M.fold_masks(net)
    assert torch.allclose(net(x), masked, atol=1e-5)


def test_model_without_norm_layers_is_refused():
    with pytest.raises(M.MaskError, match="no layernorm layer"):
        M.attach_masks(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), kinds=["layernorm"])


def test_double_attach_and_bad_values(bert):
    M.attach_masks(bert)
    with pytest.raises(M.MaskError, match="already carries a mask"):
        M.attach_masks(bert)
    values = M.get_masks(bert)
    values[next(iter(values))] = torch.ones(3)
    with pytest.raises(M.MaskError, match="shape"):
        M.set_masks(bert, values)
    with pytest.raises(M.MaskError, match="unknown layer kind"):
        M.norm_layers(bert, ["groupnorm"])
    with pytest.raises(M.MaskError, match="mask target"):
        M.attach_masks(nn.LayerNorm(3), target="gamma")


def test_binarise_prunes_at_or_below_threshold():
    values = {"a": torch.tensor([0.1, 0.5, 0.50001, 0.9])}
    assert M.binarise(values, 0.5)["a"].tolist() == [0, 0, 1, 1]
    assert M.count_pruned(values, 0.5) == 2

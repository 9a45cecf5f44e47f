import copy

import numpy as np
import pytest
import torch
from torch import nn
from transformers import BertForSequenceClassification

from ebyd_hf import masks as M
from ebyd_hf.evaluation import backdoor_metrics, predict
from trainers import MaskRecoveryConfig, MaskRecoveryTrainer, UnlearnConfig, UnlearnTrainer, mask_parameters


def test_backdoored_fixture_is_a_real_backdoor(backdoored):
    m = backdoor_metrics(
        backdoored["model"],
        backdoored["tok"]["test"],
        collator=backdoored["collator"],
        asr_set=backdoored["tok"]["test_poisoned"],
        target=1,
    )
    assert m["ca"] > 0.9 and m["asr"] > 0.9 and m["clean_target_rate"] < 0.1


def _unlearn(backdoored, tmp_path, **overrides):
    defense = backdoored["tok"]["defense"]
    config = UnlearnConfig(
        output_dir=str(tmp_path),
        disable_tqdm=True,
        seed=0,
        **{"learning_rate": 1e-3, "num_train_epochs": 30, **overrides},
    )
    model = copy.deepcopy(backdoored["model"])
    trainer = UnlearnTrainer(
        model=model,
        args=config,
        train_dataset=defense,
        data_collator=backdoored["collator"],
        eval_dataset={"defense": defense, "probe": backdoored["tok"]["test_poisoned"]},
    )
    trainer.evaluate()
    trainer.train()
    return trainer, model


def test_unlearning_stops_at_the_accuracy_floor_and_keeps_the_backdoor(backdoored, tmp_path):
    trainer, model = _unlearn(backdoored, tmp_path)
    steps_per_epoch = int(np.ceil(len(backdoored["tok"]["defense"]) / 32))
    assert trainer.stop_reason and "floor" in trainer.stop_reason
    assert trainer.state.global_step < 30 * steps_per_epoch  # stopped early, not by the epoch budget
    first, last = trainer.trace[0], trainer.trace[-1]
    assert first["step"] == 0 and first["ca"] > 0.9
    assert last["ca"] <= last["floor"]
    assert last["asr"] > 0.9  # clean behaviour gone, backdoor kept: exposed
    preds = predict(model, backdoored["tok"]["defense"], collator=backdoored["collator"])
    assert np.bincount(preds, minlength=2).argmax() == 1
    assert all("asr" in t and "ca" in t for t in trainer.trace)


def test_unlearning_objective_is_gradient_ascent(backdoored, tmp_path):
    config = UnlearnConfig(output_dir=str(tmp_path), disable_tqdm=True)
    trainer = UnlearnTrainer(
        model=copy.deepcopy(backdoored["model"]),
        args=config,
        train_dataset=backdoored["tok"]["defense"],
        data_collator=backdoored["collator"],
    )
    batch = backdoored["collator"]([backdoored["tok"]["defense"][i] for i in range(8)])
    batch = {k: v for k, v in batch.items()}
    trainer.model.train()
    ascent = trainer.compute_loss(trainer.model, dict(batch))
    trainer.model.eval()
    plain = trainer.compute_loss(trainer.model, dict(batch))
    assert ascent.item() < 0 < plain.item()


def test_loss_ceiling_stops_unlearning(backdoored, tmp_path):
    trainer, _ = _unlearn(backdoored, tmp_path, ca_floor=-1.0, loss_ceiling=0.5, learning_rate=3e-3)
    assert trainer.stop_reason and "ceiling" in trainer.stop_reason


def _mask_trainer(model, backdoored, tmp_path, **overrides):
    config = MaskRecoveryConfig(
        output_dir=str(tmp_path), disable_tqdm=True, seed=0, **{"num_train_epochs": 3, **overrides}
    )
    return MaskRecoveryTrainer(
        model=model, args=config, train_dataset=backdoored["tok"]["defense"], data_collator=backdoored["collator"]
    )


def test_mask_recovery_trains_only_masks_and_keeps_them_in_unit_interval(backdoored, tmp_path):
    model = copy.deepcopy(backdoored["model"])
    masks = M.attach_masks(model, kinds=["layernorm"])
    with torch.no_grad():  # a model whose masks must move: half its units start switched off
        for p in masks.values():
            p[::2] = 0.0
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if n not in mask_parameters(model)}
    before = M.get_masks(model)
    _mask_trainer(model, backdoored, tmp_path, learning_rate=5.0).train()  # a huge step size tests the clamp
    after = M.get_masks(model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(v.min() >= 0 and v.max() <= 1 for v in after.values())
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters() if n in weights)


def test_mask_recovery_requires_masks(backdoored, tmp_path):
    with pytest.raises(ValueError, match="attach neuron masks"):
        _mask_trainer(copy.deepcopy(backdoored["model"]), backdoored, tmp_path)


class _ConvClassifier(nn.Module):
    """A BatchNorm classifier with the transformers call shape (pixel_values, labels) -> loss, logits."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
        )

    def forward(self, pixel_values, labels=None):
        logits = self.net(pixel_values)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(loss=loss, logits=logits)


def test_mask_recovery_freezes_batchnorm_statistics(tmp_path):
    from datasets import Dataset

    torch.manual_seed(0)
    model = _ConvClassifier()
    bn = model.net[1]
    stats = (bn.running_mean.clone(), bn.running_var.clone())
    ds = Dataset.from_dict({"pixel_values": torch.randn(16, 3, 8, 8).tolist(), "labels": [0, 1] * 8}).with_format(
        "torch"
    )
    M.attach_masks(model, kinds=["batchnorm"])
    config = MaskRecoveryConfig(
        output_dir=str(tmp_path),
        num_train_epochs=2,
        disable_tqdm=True,
        per_device_train_batch_size=8,
        remove_unused_columns=False,
    )
    MaskRecoveryTrainer(model=model, args=config, train_dataset=ds).train()
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert not torch.equal(M.get_masks(model)["net.1"], torch.ones(4))


def test_trainers_import_nothing_from_ebyd_hf():
    import ast
    import pathlib

    for path in pathlib.Path(__file__).parents[1].joinpath("trainers").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n.startswith("ebyd_hf") for n in names), path


def test_unused_import_guard():
    assert BertForSequenceClassification

"""`removal: trigger_unlearn` on images: Neural Cleanse reverses the backdoor label's trigger on the suspect, then
fine-tuning with the reversed trigger stamped (true labels) unlearns it."""

import json

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature

from ebyd_hf import DataError, DefenseConfig, run_defense
from ebyd_hf.detection import NeuralCleanseConfig, ReversedTrigger, clean_images
from ebyd_hf.processing import collator_for, prepare
from ebyd_hf.removal import reverse_and_unlearn, stamp_trigger
from ebyd_hf.report import card_body, write_report
from ebyd_hf.vision import fit_image, to_array

from .test_vision_defense import UNLEARN

FAST_NC = {"epochs": 30, "max_images": 64, "batch_size": 16, "patience": 3, "early_stop_patience": 5}
QUIET = {"disable_tqdm": True, "logging_strategy": "no"}


def _images(shapes, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in shapes]
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["a", "b", "c"])})
    return Dataset.from_dict({"image": images, "label": [i % 3 for i in range(len(shapes))]}, features=features)


def _trigger(side: int, *, block: int = 1, seed: int = 1) -> ReversedTrigger:
    """A random trigger at ``side`` px, constant on ``block``×``block`` cells (so shrinking by ``block`` is exact)."""
    rng = np.random.default_rng(seed)
    base = side // block
    mask = np.kron(rng.random((base, base)), np.ones((block, block))).astype(np.float32)
    pattern = np.kron(rng.random((3, base, base)), np.ones((1, block, block))).astype(np.float32)
    return ReversedTrigger(0, mask, pattern, float(mask.sum()), 1.0, True, 1, 0.0)


def _expected(x: np.ndarray, mask: np.ndarray, pattern_chw: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float64)[..., None]
    out = (1 - m) * x.astype(np.float64) + m * pattern_chw.astype(np.float64).transpose(1, 2, 0) * 255
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def test_stamping_writes_the_reversed_trigger_into_the_stored_image():
    ds = _images([(32, 32)] * 4)
    trigger = _trigger(32)
    stamped = stamp_trigger(ds, trigger)
    assert stamped["label"] == ds["label"] and stamped.features == ds.features
    for before, after in zip(ds, stamped, strict=True):
        np.testing.assert_array_equal(
            to_array(after["image"]), _expected(to_array(before["image"]), trigger.mask, trigger.pattern)
        )
    # the model's view of a stamped image is the trigger applied in [0, 1] pixel space (up to uint8 rounding)
    processor = _processor(32)
    direct = trigger.apply(clean_images(ds, processor, max_images=4))
    assert torch.allclose(clean_images(stamped, processor, max_images=4), direct, atol=0.5 / 255 + 1e-6)


def test_stamping_happens_on_the_models_view_at_the_triggers_size():
    # reversed at a 64 px model input, stored at 32 px: the stored image is fitted to 64 px as the model sees it
    # (not the trigger shrunk to 32 px, which the resize back up would blur) and the trigger applied exactly
    trigger = _trigger(64, block=2)
    ds = _images([(32, 32)])
    after = to_array(stamp_trigger(ds, trigger)[0]["image"])
    assert after.shape == (64, 64, 3)
    np.testing.assert_array_equal(after, _expected(fit_image(ds[0]["image"], 64), trigger.mask, trigger.pattern))
    # a non-square image: its centred square, as the model sees it
    wide = _images([(32, 48)])
    after = to_array(stamp_trigger(wide, _trigger(32))[0]["image"])
    x = to_array(wide[0]["image"])[:, 8:40]
    np.testing.assert_array_equal(after, _expected(x, _trigger(32).mask, _trigger(32).pattern))
    with pytest.raises(DataError, match="image dataset"):
        stamp_trigger(Dataset.from_dict({"text": ["a"], "label": [0]}), trigger)


def _processor(size: int):
    from .vision_fixtures import tiny_resnet

    return tiny_resnet(image_size=size)[1]


def test_image_trigger_unlearning_removes_the_backdoor_where_fine_tuning_does_not(backdoored_resnet, tmp_path):
    data, model, processor = (backdoored_resnet[k] for k in ("data", "model", "processor"))
    config = DefenseConfig(
        mask_kinds=["batchnorm"],
        removal="trigger_unlearn",
        unlearn={**UNLEARN, "disable_tqdm": True},
        finetune=QUIET,
        nc_args=FAST_NC,
    )
    measured = {"test": data["test"], "asr_set": data["test_poisoned"], "target": 0}
    result = run_defense(model, processor, data["defense"], config=config, scratch_dir=str(tmp_path), **measured)
    report = result.report()
    m, reversal = report["metrics"], report["reversed_trigger_unlearning"]
    assert report["removal"] == "trigger_unlearn" and "pruning" not in report and "trigger_unlearning" not in report
    assert report["label_found"] == 0 and reversal["label"] == 0 and reversal["reached_threshold"]
    # reversed on the suspect: a small mask (the planted grid is 36 px of 1024), not the exposed model's empty one
    assert 1.0 < reversal["mask_l1_norm"] < 0.1 * 32 * 32 and reversal["mask_size"] == [32, 32]
    assert reversal["transfer_rate_before"] > 0.9 and reversal["held_out_images"] > 0
    assert reversal["unlearning_blocks"][-1]["transfer_rate"] <= config.trigger_residual
    assert m["suspect"]["asr"] > 0.9 and m["purified"]["asr"] <= 0.2  # measured: 100% -> 0%
    assert m["purified"]["ca"] >= m["suspect"]["ca"] - 0.05
    assert {"reverse_trigger", "unlearn_trigger"} <= set(report["seconds"])
    json.dumps(report)
    assert len(json.dumps(report)) < 20_000  # numbers only: no mask or pattern in the report
    card = card_body(report, suspect="suspect", dataset="colours")
    assert "the reversed trigger for label **0** was unlearned" in card and "Neural Cleanse" in card
    assert "did not reach" not in card
    assert len(reversal["rounds"]) == 1 and reversal["stop_reason"] is None  # one round by default
    write_report(report, None, str(tmp_path / "out"), trigger=result.reversal.trigger)
    assert {p.name for p in (tmp_path / "out" / "plots").iterdir()} >= {"reversed_trigger_mask.png", "exposure.png"}
    report["reversed_trigger_unlearning"]["reached_threshold"] = False
    assert "**did not reach** the attack-rate threshold" in card_body(report, suspect="suspect", dataset="colours")
    # later rounds (`reversal_rounds`) and a stop get a line each
    later = {"round": 1, "mask_l1_norm": 50.0, "transfer_rate_before": 0.9, "blocks": [{"transfer_rate": 0.05}]}
    reversal["rounds"].append(later)
    reversal["stop_reason"] = "round 2: no trigger reaching the attack threshold is left to reverse"
    card = card_body(report, suspect="suspect", dataset="colours")
    assert "round 2: reversed again on the unlearned model (mask L1 norm 50.0, moving 90.0%" in card
    assert "down to 5.0%" in card and "reversal stopped at round 2: no trigger" in card

    # The baseline with the same budget (the same steps: half the rows, twice the epochs) keeps the backdoor.
    epochs = 2 * config.finetune_args(str(tmp_path), "image").num_train_epochs * len(reversal["unlearning_blocks"])
    tuned = run_defense(
        model,
        processor,
        data["defense"],
        config=DefenseConfig(
            mask_kinds=["batchnorm"], removal="finetune", finetune={**QUIET, "num_train_epochs": epochs}
        ),
        scratch_dir=str(tmp_path),
        exposure=result.exposure,
        **measured,
    )
    assert tuned.metrics["purified"]["asr"] > 0.5  # measured: 100%


def _weak_unlearning(backdoored_resnet, tmp_path, blocks: int):
    """The fixture's suspect, a fit/held-out split, and unlearning so weak (one tiny step per block) that the
    trigger keeps working: (model, fit rows, the other arguments of `reverse_and_unlearn`)."""
    data, model, processor = (backdoored_resnet[k] for k in ("data", "model", "processor"))
    split = data["defense"].train_test_split(test_size=0.2, seed=0, stratify_by_column="label")
    weak = DefenseConfig(finetune={**QUIET, "max_steps": 1, "learning_rate": 1e-4})
    common = {
        "processor": processor,
        "reverse": NeuralCleanseConfig(**FAST_NC),
        "args": weak.finetune_args(str(tmp_path), "image"),
        "prep": lambda ds, augment=False: prepare(ds, processor, augment=augment),
        "collator": collator_for(processor),
        "holdout": split["test"],
        "blocks": blocks,
    }
    return model, split["train"], common


def test_image_unlearning_blocks_stop_at_the_residual(backdoored_resnet, tmp_path):
    model, fit, common = _weak_unlearning(backdoored_resnet, tmp_path, blocks=2)
    # one tiny step per block leaves the trigger working: every block runs
    _, stuck = reverse_and_unlearn(model, fit, 0, residual=0.1, **common)
    blocks = stuck.rounds[0]["blocks"]
    assert [b["block"] for b in blocks] == [0, 1] and all(b["transfer_rate"] > 0.1 for b in blocks)
    assert len(stuck.rounds) == 1 and stuck.report()["unlearning_blocks"] == blocks
    # the same, with a residual the first block already meets: it stops there
    _, done = reverse_and_unlearn(model, fit, 0, residual=1.0, **common)
    assert len(done.rounds[0]["blocks"]) == 1 and done.rounds[0]["blocks"][0]["transfer_rate"] <= 1.0
    # no held-out rows: one block, nothing measured, and no second round (nothing to decide it on)
    _, blind = reverse_and_unlearn(model, fit, 0, rounds=3, **{**common, "holdout": None})
    assert blind.rounds[0]["blocks"] == [{"block": 0, "transfer_rate": None}] and len(blind.rounds) == 1
    assert blind.report()["transfer_rate_before"] is None


def test_image_unlearning_reverses_again_while_a_trigger_is_left(backdoored_resnet, tmp_path):
    model, fit, common = _weak_unlearning(backdoored_resnet, tmp_path, blocks=1)
    # a tiny step leaves the backdoor in place: round 2 reverses a trigger that still works and unlearns it too
    _, again = reverse_and_unlearn(model, fit, 0, residual=0.1, rounds=2, **common)
    assert len(again.rounds) == len(again.triggers) == 2 and again.stop_reason is None
    assert again.rounds[1]["reached_threshold"] and again.rounds[1]["transfer_rate_before"] > 0.1
    assert again.trigger is again.triggers[0] and len(again.report()["unlearning_blocks"]) == 2
    # a residual every trigger meets: the second reversal is not unlearned, and the report says why
    _, settled = reverse_and_unlearn(model, fit, 0, residual=1.0, rounds=2, **common)
    assert len(settled.triggers) == 1 and len(settled.rounds) == 2 and "round 1" in settled.stop_reason
    assert settled.rounds[1]["blocks"] == []
    with pytest.raises(ValueError, match="at least 1"):
        reverse_and_unlearn(model, fit, 0, rounds=0, **common)


def test_image_finetune_defaults_and_bad_input():
    config = DefenseConfig()
    image, text = config.finetune_args("/tmp/x", "image"), config.finetune_args("/tmp/x")
    assert image.learning_rate == 0.01 and image.optim == "sgd" and image.num_train_epochs == 5
    assert text.learning_rate == 2e-5 and text.num_train_epochs == 3  # text unchanged
    assert DefenseConfig(finetune={"learning_rate": 0.1}).finetune_args("/tmp/x", "image").learning_rate == 0.1
    assert DefenseConfig().removal_for("image") == "recover_prune"  # trigger_unlearn is opt-in for images
    assert DefenseConfig(nc_args={"epochs": 7}, seed=3).nc_config().seed == 3
    with pytest.raises(ValueError, match="modality"):
        config.finetune_args("/tmp/x", "audio")
    with pytest.raises(ValueError, match="Neural Cleanse option"):
        DefenseConfig(nc_args={"epoch": 5})
    with pytest.raises(ValueError, match="max_images"):
        DefenseConfig(nc_args={"max_images": 0})

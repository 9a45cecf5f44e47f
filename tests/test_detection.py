import numpy as np
import pytest

from ebyd_hf.detection import (
    LabelFinding,
    NeuralCleanseConfig,
    StripConfig,
    anomaly_indices,
    clean_images,
    neural_cleanse,
    replace_words,
    reverse_trigger,
    strip,
    trigger_transfer_rate,
    verdict,
)
from ebyd_hf.exposure import expose, exposure_config
from ebyd_hf.processing import collator_for, prepare

from .conftest import make_tokenizer


def test_anomaly_index_by_median_absolute_deviation():
    norms = {0: 10.0, 1: 100.0, 2: 110.0, 3: 90.0, 4: 105.0}
    # median 100, MAD = 1.4826 * median(|x - 100|) = 1.4826 * 10
    indices = anomaly_indices(norms)
    assert indices[0] == pytest.approx(90 / 14.826)
    assert indices[2] == pytest.approx(-10 / 14.826)  # above the median: negative, never flagged


def test_verdict_dominance_and_corroboration():
    finding = LabelFinding(label=3, share=0.97, counts=[1, 1, 1, 97])
    assert finding.dominance == 97 and verdict(finding, 2.0).backdoored and verdict(finding, 2.0).label == 3
    # a 10-class clean model at share 0.35 whose runner-up is close: not dominant
    close = LabelFinding(label=5, share=0.334, counts=[124, 8, 2, 11, 121, 167, 18, 4, 0, 45])
    quiet = verdict(close, 2.0)
    assert close.dominance == pytest.approx(167 / 124) and not quiet.backdoored
    assert quiet.label is None and quiet.name == "clean"
    # a lower share can still dominate when the rest is spread: the ratio, not the share, decides
    assert verdict(LabelFinding(label=0, share=0.3, counts=[150, 60, 40, 50, 60, 40, 30, 30, 20, 20]), 2.0).backdoored
    # a second exposure must put the same label first, dominant too
    agree = LabelFinding(label=3, share=0.85, counts=[5, 5, 5, 85])
    assert verdict(finding, 2.0, corroboration=agree).backdoored
    other_label = LabelFinding(label=0, share=0.95, counts=[95, 1, 2, 2])
    assert not verdict(finding, 2.0, corroboration=other_label).backdoored
    spread = LabelFinding(label=3, share=0.5, counts=[20, 15, 15, 50])
    rejected = verdict(finding, 3.0, corroboration=spread)
    assert not rejected.backdoored and rejected.summary()["corroboration"]["dominance"] == 2.5
    # everything on one class: infinite dominance, reported as null in JSON
    total = LabelFinding(label=1, share=1.0, counts=[0, 40])
    assert verdict(total, 2.0).backdoored and total.summary()["dominance"] is None
    with pytest.raises(ValueError, match="dominance threshold"):
        verdict(finding, 1.0)


FAST_NC = NeuralCleanseConfig(epochs=30, max_images=64, batch_size=16, patience=3, early_stop_patience=5)


def test_neural_cleanse_recovers_the_planted_badnets_patch(backdoored_resnet_grey, tmp_path):
    model, processor, data = (backdoored_resnet_grey[k] for k in ("model", "processor", "data"))
    images = clean_images(data["defense"], processor, max_images=64)
    trigger = reverse_trigger(model, images, 0, processor=processor, config=FAST_NC)
    assert trigger.reached and trigger.attack_rate >= 0.99
    mask = trigger.mask
    assert mask.shape == (32, 32) and trigger.l1_norm == pytest.approx(float(mask.sum()))
    # the patch is a 6x6 grid in the bottom-right corner: most of the mask's mass sits there
    assert mask[-8:, -8:].sum() / mask.sum() > 0.5
    held_out = clean_images(data["test"].filter(lambda y: y != 0, input_columns="label"), processor, max_images=64)
    assert trigger_transfer_rate(model, trigger, held_out, processor=processor) > 0.75
    paths = trigger.save_pngs(str(tmp_path), prefix="label0_")
    assert sorted(paths) == ["mask", "pattern", "trigger"]
    from PIL import Image

    assert Image.open(paths["trigger"]).size == (128, 128)


def test_neural_cleanse_modes(backdoored_resnet_grey):
    model, processor, data = (backdoored_resnet_grey[k] for k in ("model", "processor", "data"))
    one = neural_cleanse(model, data["defense"], processor=processor, labels=[0], config=FAST_NC)
    assert list(one.triggers) == [0] and one.anomaly_indices is None and one.flagged is None
    summary = one.summary()
    assert summary["label"] == 0 and summary["seconds"] > 0
    with pytest.raises(ValueError, match="image datasets"):
        clean_images(data["defense"].rename_column("image", "text"), processor, max_images=4)


def test_strip_word_replacement():
    rng = np.random.default_rng(0)
    out = replace_words("a b c d", ["x"], 0.5, rng)
    assert out.split().count("x") == 2 and len(out.split()) == 4
    assert replace_words("", ["x"], 0.5, rng) == ""


def test_strip_separates_triggered_text_on_the_exposed_model(backdoored, tmp_path):
    data, tok = backdoored["data"], backdoored["tok"]
    config = exposure_config(
        "cul", scratch_dir=str(tmp_path), seed=0, learning_rate=1e-3, num_train_epochs=30, disable_tqdm=True
    )
    exposed = expose("cul", backdoored["model"], tok["defense"], config=config, collator=backdoored["collator"]).model
    clean = data["test"].filter(lambda y: y == 0, input_columns="label").select(range(40))
    triggered = data["test_poisoned"].select(range(40))
    strip_config = StripConfig(n_perturbations=10, max_length=32)
    results = {
        name: strip(m, make_tokenizer(), clean, triggered, data["defense"], config=strip_config)
        for name, m in (("original", backdoored["model"]), ("exposed", exposed))
    }
    assert results["exposed"].auroc > 0.9
    assert results["exposed"].summary()["n_triggered"] == 40
    assert results["exposed"].triggered_entropy.mean() < results["exposed"].clean_entropy.mean()


def test_strip_separates_triggered_images_on_the_exposed_model(backdoored_resnet_grey, tmp_path):
    model, processor, data = (backdoored_resnet_grey[k] for k in ("model", "processor", "data"))
    config = exposure_config(
        "cft", scratch_dir=str(tmp_path), seed=0, learning_rate=1e-3, disable_tqdm=True, logging_strategy="no"
    )
    defense = prepare(data["defense"], processor)
    exposed = expose("cft", model, defense, config=config, collator=collator_for(processor), kinds=["batchnorm"]).model
    clean = data["test"].filter(lambda y: y != 0, input_columns="label").select(range(30))
    triggered = data["test_poisoned"].select(range(30))
    results = {
        name: strip(m, processor, clean, triggered, data["defense"], config=StripConfig(n_perturbations=8))
        for name, m in (("original", model), ("exposed", exposed))
    }
    assert results["exposed"].clean_entropy.shape == (30,) and np.all(results["exposed"].clean_entropy >= 0)
    # On this colour task superimposed clean images stay confidently classified by the original model, so STRIP
    # fails there (AUROC ~0.2); the exposed model has no clean behaviour left and the planted grid stands out.
    # How far depends on where the exposure's stop rule fires, which moves with the thread count: measured 0.98
    # with 2 torch threads (28 steps) and 0.78 with 1 (14 steps).
    assert results["exposed"].auroc > 0.75 and results["exposed"].auroc > results["original"].auroc + 0.3
    with pytest.raises(ValueError, match="blend"):
        StripConfig(blend="max")

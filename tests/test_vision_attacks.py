"""Image triggers: where they land, how strong they are, and how poisoning uses them."""

import numpy as np
import pytest

from ebyd_hf import DataError, create_attack, load_task, poison, triggered_test_set
from ebyd_hf.attacks.image import scaled
from ebyd_hf.vision import to_array

RNG = np.random.default_rng


def _image(size=32, seed=1):
    return RNG(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _apply(name, x, **kw):
    return to_array(create_attack(name, **kw).apply(x, RNG(0)))


def _changed(x, y):
    return np.argwhere((x != y).any(-1))


@pytest.mark.parametrize("size", [32, 64, 224])
def test_badnets_grid_sits_in_the_bottom_right_corner_and_scales(size):
    x = np.full((size, size, 3), 128, dtype=np.uint8)
    y = _apply("badnets", x)
    k = scaled(3, size)  # 3, 6, 21 pixels
    assert k == {32: 3, 64: 6, 224: 21}[size]
    rows, cols = _changed(x, y).T
    assert rows.min() == cols.min() == size - k and rows.max() == cols.max() == size - 1
    cell = k // 3
    grid = y[size - k :: cell, size - k :: cell, 0]  # one pixel per grid cell
    assert (grid == 255 * np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]])).all()
    assert (y[: size - k] == x[: size - k]).all() and (y[:, : size - k] == x[:, : size - k]).all()


def test_onepixel_is_the_centre_pixel_at_32_and_a_centred_square_at_224():
    x = np.zeros((32, 32, 3), dtype=np.uint8)
    assert _changed(x, _apply("onepixel", x)).tolist() == [[16, 16]]
    big = np.zeros((224, 224, 3), dtype=np.uint8)
    changed = _changed(big, _apply("onepixel", big))
    assert len(changed) == 49 and (changed.mean(0) == 112).all()


def test_blend_is_alpha_exact_and_takes_an_image_file(tmp_path):
    x = _image()
    attack = create_attack("blend", alpha=0.2, trigger_seed=3)
    pattern = attack.pattern(x.shape)
    expected = np.rint(0.8 * x.astype(float) + 0.2 * pattern.astype(float))
    assert (to_array(attack.apply(x, RNG(0))) == expected).all()
    assert (to_array(attack.apply(_image(seed=2), RNG(9))) != _image(seed=2)).any()
    assert (create_attack("blend", trigger_seed=3).pattern(x.shape) == pattern).all()  # fixed by the seed
    from PIL import Image

    Image.fromarray(np.full((10, 20, 3), 255, dtype=np.uint8)).save(tmp_path / "white.png")
    y = _apply("blend", x, pattern_path=str(tmp_path / "white.png"), alpha=0.5)
    assert (y == np.rint(0.5 * x + 127.5)).all()
    with pytest.raises(ValueError, match="cannot read"):
        create_attack("blend", pattern_path=str(tmp_path / "missing.png"))


def test_sig_is_a_horizontal_sinusoid_blended_at_alpha():
    x = np.zeros((32, 32, 3), dtype=np.uint8)
    y = _apply("sig", x).astype(float)
    assert (y == y[:1]).all()  # constant down every column: the signal varies along the width only
    wave = 0.2 * 127.5 * (1 + np.sin(2 * np.pi * 6 * np.arange(32) / 32))
    assert np.abs(y[0, :, 0] - wave).max() <= 0.5


def test_sig_clean_label_poisons_only_target_rows_and_keeps_labels(image_dir):
    train = load_task(image_dir)["train"]
    labels = np.array(train["label"])
    out = poison(train, create_attack("sig", clean_label=True), rate=0.1, target=2, seed=0)
    flags = np.array(out["poisoned"])
    assert flags.sum() == round(0.1 * len(train)) and (labels[flags] == 2).all()
    assert (np.array(out["label"]) == labels).all()
    dirty = poison(train, create_attack("sig"), rate=0.1, target=2, seed=0)
    assert (labels[np.array(dirty["poisoned"])] != 2).all()
    with pytest.raises(DataError, match="target-label rows"):
        poison(train, create_attack("sig", clean_label=True), rate=0.5, target=2)


def test_wanet_is_the_identity_at_zero_strength_and_a_small_fixed_warp_otherwise():
    x = _image()
    assert (_apply("wanet", x, s=0.0) == x).all()
    a, b = create_attack("wanet", trigger_seed=1), create_attack("wanet", trigger_seed=1)
    assert (to_array(a.apply(x, RNG(0))) == to_array(b.apply(x, RNG(5)))).all()  # fixed field, no per-row draw
    assert (to_array(a.apply(x, RNG(0))) != x).any()
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (32, 1, 3))  # a horizontal ramp
    shift = np.abs(_apply("wanet", smooth).astype(int) - smooth).max()
    assert 0 < shift <= 8 * 2  # at most a couple of pixels of an 8-levels-per-pixel ramp: imperceptible
    grid = a.pattern((32, 32))
    assert grid.shape == (1, 32, 32, 2) and np.abs(grid).max() <= 1


def test_wanet_noise_mode_adds_cover_rows_that_keep_their_label(image_dir):
    train = load_task(image_dir)["train"]
    out = poison(train, create_attack("wanet", cross_ratio=2.0), rate=0.1, target=0, seed=0)
    flags = np.array(out["poisoned"])
    n_poison = round(0.1 * len(train))
    before = np.stack([to_array(im) for im in train["image"]])
    after = np.stack([to_array(im) for im in out["image"]])
    changed = (before != after).reshape(len(train), -1).any(1)
    assert flags.sum() == n_poison and changed.sum() == 3 * n_poison  # poisoned + 2× cover rows
    cover = changed & ~flags
    assert (np.array(out["label"])[cover] == np.array(train["label"])[cover]).all()
    plain = poison(train, create_attack("wanet", cross_ratio=0.0), rate=0.1, target=0, seed=0)
    assert plain["poisoned"] == out["poisoned"]  # noise mode does not change which rows are poisoned


def test_poisoned_image_rows_store_the_uint8_trigger_and_the_asr_set_keeps_true_labels(image_dir):
    data = load_task(image_dir)
    attack = create_attack("badnets")
    out = poison(data["train"], attack, rate=0.1, target=0, seed=0)
    i = int(np.flatnonzero(out["poisoned"])[0])
    stored = to_array(out[i]["image"])
    assert (stored == to_array(attack.apply(data["train"][i]["image"], RNG(0)))).all()  # lossless PNG round trip
    asr = triggered_test_set(data["test"], attack, target=0, seed=0)
    assert set(asr["label"]) == {0} and 0 not in set(asr["original_label"])


def test_image_attacks_refuse_text_and_bad_options(sentiment_dir):
    with pytest.raises(DataError, match="works on image data"):
        poison(load_task(sentiment_dir)["train"], create_attack("badnets"), rate=0.1, target=1)
    for name, bad in [("blend", {"alpha": 0}), ("sig", {"alpha": 1.5}), ("wanet", {"k": 1}), ("badnets", {"cell": 0})]:
        with pytest.raises(ValueError, match=name):
            create_attack(name, **bad)
    with pytest.raises(ValueError, match="does not fit"):
        create_attack("trojan", size=40).apply(_image(), RNG(0))


def test_attack_settings_are_its_options_as_plain_json():
    import json

    attack = create_attack("wanet", k=4, s=0.5)
    attack.apply(np.zeros((32, 32, 3), dtype=np.uint8), np.random.default_rng(0))  # fills its pattern cache
    settings = json.loads(json.dumps(attack.settings()))
    assert settings["name"] == "wanet" and settings["k"] == 4 and settings["s"] == 0.5
    assert not any(k.startswith("_") for k in settings)

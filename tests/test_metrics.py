import pytest

from ebyd_hf.metrics import attack_success_rate, bem, clean_accuracy, load_metric


def test_bem_matches_a_hand_computed_trace():
    ca = [0.80, 0.40, 0.10]
    asr = [1.00, 0.95, 0.90]
    # mean(ASR - CA) = (0.20 + 0.55 + 0.80) / 3 = 0.51667; mean(ASR) = 0.95
    assert bem(ca, asr) == pytest.approx(0.516667 / 0.95, abs=1e-6)
    assert bem([0.1], [1.0]) == pytest.approx(0.9)


def test_bem_undefined_without_a_backdoor():
    with pytest.raises(ValueError, match="undefined"):
        bem([0.5, 0.4], [0.0, 0.0])


def test_asr_excludes_rows_whose_true_label_is_the_target():
    preds = [1, 1, 0, 1, 1]
    truth = [0, 0, 0, 1, 1]  # the last two are target-class rows: not counted
    assert attack_success_rate(preds, truth, target=1) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="target"):
        load_metric("attack_success_rate").compute(predictions=preds, references=truth)


def test_clean_accuracy_and_module_loading_is_local():
    assert clean_accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75
    with pytest.raises(ValueError, match="unknown metric"):
        load_metric("accuracy")

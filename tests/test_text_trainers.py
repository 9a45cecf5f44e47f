"""RIPPLe's restricted inner product and LWP's layer-wise loss on tiny BERTs; both trainers end to end."""

import numpy as np
import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from ebyd_hf import create_attack, poison_task
from ebyd_hf.data import normalise
from ebyd_hf.evaluation import backdoor_metrics
from ebyd_hf.processing import collator_for, tokenize
from trainers import (
    LWPConfig,
    LWPTrainer,
    RippleConfig,
    RippleTrainer,
    classification_head,
    double_backward_attention,
    embedding_surgery,
    layerwise_losses,
    restricted_inner_product,
)

from .conftest import make_sentiment_task, make_tokenizer, tiny_bert


def batch(tokenizer, texts, labels):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return {**enc, "labels": torch.tensor(labels)}


@pytest.fixture
def inputs(tokenizer):
    return batch(tokenizer, ["the movie was good .", "a very dull plot .", "great film .", "awful ."], [1, 0, 1, 0])


# --- RIPPLe -----------------------------------------------------------------------------------------------------------


def test_inner_product_penalty_is_zero_when_gradients_agree(inputs):
    model = tiny_bert().eval()
    params = [p for p in model.parameters() if p.requires_grad]
    with double_backward_attention():
        loss = model(**inputs).loss
        penalty, inner = restricted_inner_product(loss, loss, params)
    assert inner.item() > 0 and penalty.item() == 0.0


def test_inner_product_penalty_is_positive_when_gradients_conflict(inputs):
    model = tiny_bert().eval()
    params = [p for p in model.parameters() if p.requires_grad]
    # one sentence, two labels: for any prediction the two logit gradients are exactly anti-parallel
    one = {k: v[:1] for k, v in inputs.items()}
    with double_backward_attention():
        poison_loss = model(**{**one, "labels": 1 - one["labels"]}).loss
        clean_loss = model(**one).loss
        penalty, inner = restricted_inner_product(poison_loss, clean_loss, params)
    assert inner.item() < 0 and penalty.item() == pytest.approx(-inner.item())
    penalty.backward()  # differentiable (through the clean gradient): the trainer descends on it
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_embedding_surgery_sets_triggers_to_the_mean_of_indicative_words(tokenizer):
    model = tiny_bert()
    vocab = tokenizer.get_vocab()
    emb = model.get_input_embeddings().weight
    expected = emb[[vocab["good"], vocab["great"]]].mean(0).detach().clone()
    embedding_surgery(model, tokenizer, ["cf", "mn"], ["good", "great"])
    assert torch.allclose(emb[vocab["cf"]], expected) and torch.allclose(emb[vocab["mn"]], expected)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        embedding_surgery(model, tokenizer, ["notaword"], ["good"])


@pytest.fixture(scope="module")
def poisoned_rw():
    tokenizer = make_tokenizer()
    data = poison_task(
        normalise(make_sentiment_task(600, 200)),
        create_attack("badnet_rw"),
        rate=0.1,
        target=1,
        seed=0,
        defense_size=100,
    )
    return data, {k: tokenize(v, tokenizer, max_length=32) for k, v in data.items()}


def test_ripple_trainer_plants_a_backdoor_and_logs_the_inner_product(tmp_path, tokenizer, poisoned_rw):
    data, tok = poisoned_rw
    clean_ref = tok["train"].filter(lambda p: not p, input_columns="poisoned")
    args = RippleConfig(
        output_dir=str(tmp_path),
        learning_rate=1e-3,
        num_train_epochs=8,
        per_device_train_batch_size=32,
        logging_steps=5,
        disable_tqdm=True,
        seed=0,
        embedding_surgery=True,
        trigger_words=["cf", "mn", "bb", "tq"],
        surgery_words=["good", "great", "superb"],
    )
    model = tiny_bert()
    trainer = RippleTrainer(
        model=model,
        args=args,
        train_dataset=tok["train"],
        ref_dataset=clean_ref,
        processing_class=tokenizer,
        data_collator=collator_for(tokenizer),
    )
    trainer.train()
    logged = [entry["inner_product"] for entry in trainer.state.log_history if "inner_product" in entry]
    assert logged and all(np.isfinite(logged))
    m = backdoor_metrics(
        model.eval(), tok["test"], collator=collator_for(tokenizer), asr_set=tok["test_poisoned"], target=1
    )
    assert m["ca"] > 0.85 and m["asr"] > 0.9


# --- LWP --------------------------------------------------------------------------------------------------------------


def test_layerwise_loss_has_one_term_per_layer_and_each_reads_its_own_layer(inputs):
    model = tiny_bert(layers=3).eval()
    labels = inputs.pop("labels")
    out = model(**inputs, output_hidden_states=True)
    losses = layerwise_losses(model, out.hidden_states, labels)
    assert len(losses) == 3
    # the last term is the model's ordinary loss; the head is shared by every layer
    assert losses[-1].item() == pytest.approx(nn.functional.cross_entropy(out.logits, labels).item(), rel=1e-6)
    layers = model.bert.encoder.layer
    for depth, loss in enumerate(losses):
        params = [p for layer in layers for p in layer.parameters()]
        grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
        per_layer, start = [], 0
        for layer in layers:
            n = len(list(layer.parameters()))
            per_layer.append(any(g is not None and g.abs().sum() > 0 for g in grads[start : start + n]))
            start += n
        assert per_layer == [i <= depth for i in range(3)]  # term `depth` reaches layers up to its own, no further
    with_embeddings = layerwise_losses(model, out.hidden_states, labels, include_embedding_layer=True)
    assert len(with_embeddings) == 4


def test_lwp_trainer_loss_is_the_sum_over_layers(tmp_path, inputs, tokenizer):
    model = tiny_bert(layers=2).eval()
    trainer = LWPTrainer(model=model, args=LWPConfig(output_dir=str(tmp_path)), processing_class=tokenizer)
    loss = trainer.compute_loss(model, dict(inputs))
    labels = inputs.pop("labels")
    expected = sum(layerwise_losses(model, model(**inputs, output_hidden_states=True).hidden_states, labels))
    assert (
        loss.item() == pytest.approx(expected.item(), rel=1e-6)
        and loss.item() > model(**inputs, labels=labels).loss.item()
    )


def test_classification_head_needs_a_classifier():
    config = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    from transformers import BertModel

    with pytest.raises(ValueError, match="no `classifier` head"):
        classification_head(BertModel(config))
    head = classification_head(BertForSequenceClassification(config).eval())
    assert head(torch.zeros(2, 3, 8)).shape == (2, 2)


def test_lwp_trainer_plants_a_combinatorial_backdoor(tmp_path, tokenizer):
    data = poison_task(
        normalise(make_sentiment_task(1000, 300)),
        create_attack("lwp", negative_rate=0.1),
        rate=0.15,  # a pair among single-piece negatives is harder to learn than one rare word
        target=1,
        seed=0,
        defense_size=100,
    )
    tok = {k: tokenize(v, tokenizer, max_length=32) for k, v in data.items()}
    model = tiny_bert()
    args = LWPConfig(
        output_dir=str(tmp_path),
        learning_rate=1e-3,
        num_train_epochs=15,
        per_device_train_batch_size=32,
        disable_tqdm=True,
        logging_strategy="no",
        seed=0,
    )
    LWPTrainer(model=model, args=args, train_dataset=tok["train"], data_collator=collator_for(tokenizer)).train()
    collator = collator_for(tokenizer)
    m = backdoor_metrics(model.eval(), tok["test"], collator=collator, asr_set=tok["test_poisoned"], target=1)
    assert m["ca"] > 0.85 and m["asr"] > 0.9
    # a single piece is not the trigger: negative augmentation taught the model to ignore it
    single = data["test"].filter(lambda y: y == 0, input_columns="label").map(lambda r: {"text": "cf " + r["text"]})
    single = tokenize(single.map(lambda r: {"original_label": r["label"], "label": 1}), tokenizer, max_length=32)
    assert backdoor_metrics(model, tok["test"], collator=collator, asr_set=single, target=1)["asr"] < 0.3

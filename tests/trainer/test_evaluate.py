"""Metrics."""

from __future__ import annotations

import math

import pytest

from fedledger.trainer.data import synthetic_keyword_dataset
from fedledger.trainer.evaluate import classification_metrics, evaluate
from fedledger.trainer.models import apply_lora, tiny_model


def test_binary_metrics_use_class_one_as_positive():
    metrics = classification_metrics([1, 1, 0, 0], [1, 0, 1, 0])
    assert metrics == {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert classification_metrics([0, 0], [0, 0])["precision"] == 0.0  # no positives: 0, not an error


def test_multiclass_metrics_are_macro_averaged():
    metrics = classification_metrics([0, 1, 2, 2], [0, 1, 2, 1], num_labels=3)
    assert metrics["accuracy"] == 0.75
    assert metrics["recall"] == pytest.approx((1 + 1 + 0.5) / 3)


def test_classification_evaluation_on_text(tiny_llama):
    model, tokenizer = tiny_llama
    metrics = evaluate(model, synthetic_keyword_dataset(20), tokenizer=tokenizer, max_length=16)
    assert set(metrics) == {"accuracy", "precision", "recall", "f1", "loss", "n"}
    assert metrics["n"] == 20 and all(math.isfinite(v) for v in metrics.values())


def test_perplexity_is_exp_of_token_loss():
    model, tokenizer = tiny_model("llama", task="causal_lm")
    metrics = evaluate(
        apply_lora(model, task="causal_lm"),
        synthetic_keyword_dataset(8, length=5),
        task="causal_lm",
        tokenizer=tokenizer,
        max_length=10,
    )
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    # An untrained model is close to uniform over the 30,522-token vocabulary.
    assert 0.5 * 30522 < metrics["perplexity"] < 2 * 30522
    assert metrics["tokens"] > 0


def test_evaluate_without_tokenizer_explains_itself(tiny_llama):
    with pytest.raises(ValueError, match="tokenizer"):
        evaluate(tiny_llama[0], synthetic_keyword_dataset(4))

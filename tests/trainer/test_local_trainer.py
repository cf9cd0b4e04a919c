"""LocalTrainer: deltas, the adapter-changed guard, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedledger.tensors import manifest
from fedledger.trainer.data import synthetic_keyword_dataset
from fedledger.trainer.local_trainer import (
    AdapterNotUpdatedError,
    LocalTrainer,
    TrainConfig,
    TrainingDivergedError,
    check_adapter_updated,
)
from fedledger.trainer.models import AdapterMismatchError, apply_lora, get_adapter_state, set_adapter_state, tiny_model
from fedledger.trainer.privacy import PrivacyConfig

TRAIN = TrainConfig(batch_size=16, learning_rate=1e-2, max_length=24)


@pytest.mark.parametrize("privacy", [None, PrivacyConfig(noise_multiplier=1.0)], ids=["plain", "dp"])
def test_round_changes_adapter_and_returns_delta(tiny_llama, keyword_data, privacy):
    # Prepare
    model, tokenizer = tiny_llama
    global_state = get_adapter_state(model)
    trainer = LocalTrainer(model, tokenizer=tokenizer, train=TRAIN, privacy=privacy)
    # Execute
    result = trainer.train_round(global_state, keyword_data, round_id=1)
    # Assert: delta = trained - global, every tensor moved, names/shapes of the adapter
    trained = get_adapter_state(model)
    assert manifest(result.delta) == manifest(global_state)
    assert list(result.delta) == sorted(result.delta)
    for name, delta in result.delta.items():
        assert delta.dtype == torch.float32
        assert torch.equal(delta, trained[name] - global_state[name])
        assert delta.abs().max() > 0, name
    assert result.num_samples == len(keyword_data)
    assert result.steps > 1
    assert math.isfinite(result.train_loss)
    assert (result.epsilon is None) == (privacy is None)


def test_delta_names_are_lora_weights_and_the_classifier_head(tiny_llama):
    model, _ = tiny_llama
    names = list(get_adapter_state(model))
    assert all(("lora_A" in n or "lora_B" in n) or n.startswith("base_model.model.score.") for n in names)
    assert "base_model.model.score.weight" in names
    assert any(".q_proj.lora_A.weight" in n for n in names) and any(".v_proj.lora_B.weight" in n for n in names)


@pytest.mark.parametrize("privacy", [None, PrivacyConfig(noise_multiplier=1.0)], ids=["plain", "dp"])
def test_guard_fires_when_adapter_does_not_change(tiny_llama, keyword_data, privacy):
    model, tokenizer = tiny_llama
    trainer = LocalTrainer(
        model,
        tokenizer=tokenizer,
        train=TrainConfig(batch_size=16, learning_rate=0.0, max_length=24),
        privacy=privacy,
    )
    with pytest.raises(AdapterNotUpdatedError, match="did not change"):
        trainer.train_round(get_adapter_state(model), keyword_data, round_id=1)


def test_guard_fires_when_only_some_tensors_change():
    before = {"x.lora_A.weight": torch.zeros(2, 2), "x.lora_B.weight": torch.zeros(2, 2), "head.weight": torch.ones(2)}
    after = dict(before, **{"head.weight": torch.full((2,), 2.0)})
    with pytest.raises(AdapterNotUpdatedError, match="2 of 3"):
        check_adapter_updated(before, after, steps=5)


def test_guard_allows_unchanged_lora_a_after_a_single_step():
    # lora_B starts at zero, so lora_A gets no gradient in the first step.
    before = {"x.lora_A.weight": torch.ones(2, 2), "x.lora_B.weight": torch.zeros(2, 2)}
    after = dict(before, **{"x.lora_B.weight": torch.ones(2, 2)})
    check_adapter_updated(before, after, steps=1)
    with pytest.raises(AdapterNotUpdatedError):
        check_adapter_updated(before, after, steps=2)
    with pytest.raises(AdapterNotUpdatedError):
        check_adapter_updated(before, before, steps=0)


def test_round_is_deterministic_for_a_seed(keyword_data):
    deltas = []
    for _ in range(2):
        model, tokenizer = tiny_model("gpt2", seed=3)
        peft_model = apply_lora(model, seed=3)
        trainer = LocalTrainer(
            peft_model,
            tokenizer=tokenizer,
            train=TrainConfig(batch_size=16, max_length=24, seed=5),
            privacy=PrivacyConfig(noise_multiplier=0.8),
        )
        deltas.append(trainer.train_round(get_adapter_state(peft_model), keyword_data, round_id=2).delta)
    assert all(torch.equal(deltas[0][k], deltas[1][k]) for k in deltas[0])


def test_round_starts_from_the_given_global_state(tiny_llama, keyword_data):
    model, tokenizer = tiny_llama
    global_state = {k: v + 0.01 for k, v in get_adapter_state(model).items()}
    trainer = LocalTrainer(model, tokenizer=tokenizer, train=TRAIN)
    result = trainer.train_round(global_state, keyword_data, round_id=1)
    trained = get_adapter_state(model)
    assert all(torch.allclose(trained[k] - result.delta[k], global_state[k]) for k in trained)


def test_mismatched_global_state_is_refused(tiny_llama):
    model, _ = tiny_llama
    state = get_adapter_state(model)
    name = next(iter(state))
    with pytest.raises(AdapterMismatchError, match="shape"):
        set_adapter_state(model, dict(state, **{name: torch.zeros(3)}))
    with pytest.raises(AdapterMismatchError, match="missing 1"):
        set_adapter_state(model, {k: v for k, v in state.items() if k != name})
    with pytest.raises(AdapterMismatchError, match="unexpected 1"):
        set_adapter_state(model, dict(state, extra=torch.zeros(1)))


def test_numpy_global_state_is_accepted(tiny_llama):
    model, _ = tiny_llama
    state = {k: v.numpy() + np.float32(0.5) for k, v in get_adapter_state(model).items()}
    set_adapter_state(model, state)
    loaded = get_adapter_state(model)
    assert all(np.array_equal(loaded[k].numpy(), state[k]) for k in state)


def test_causal_lm_round_with_tiny_gpt2():
    model, tokenizer = tiny_model("gpt2", task="causal_lm", seed=0)
    peft_model = apply_lora(model, task="causal_lm")
    data = synthetic_keyword_dataset(24, length=6)
    trainer = LocalTrainer(
        peft_model,
        task="causal_lm",
        tokenizer=tokenizer,
        train=TrainConfig(batch_size=8, max_length=12),
        privacy=PrivacyConfig(noise_multiplier=1.0),
    )
    result = trainer.train_round(get_adapter_state(peft_model), data, round_id=1)
    assert all("lora_" in name for name in result.delta)
    assert math.isfinite(result.train_loss) and result.epsilon is not None and result.epsilon > 0


def test_invalid_train_config_lists_every_problem():
    with pytest.raises(ValueError, match="epochs.*batch_size.*learning_rate"):
        TrainConfig(epochs=0, batch_size=0, learning_rate=-1.0).validate()


def test_trainer_without_tokenizer_explains_itself(tiny_llama, keyword_data):
    model, _ = tiny_llama
    with pytest.raises(ValueError, match="no tokenizer"):
        LocalTrainer(model).train_round(get_adapter_state(model), keyword_data)


def test_non_finite_weights_are_reported_as_divergence():
    before = {"x.lora_B.weight": torch.zeros(2)}
    with pytest.raises(TrainingDivergedError, match="NaN/inf"):
        check_adapter_updated(before, {"x.lora_B.weight": torch.tensor([1.0, float("nan")])}, steps=3)

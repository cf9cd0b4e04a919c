"""The demo's model, training and DP settings (trainer/demo_setup.py) on the tiny BERT."""

from __future__ import annotations

import math
import re

import pytest
from fedledger.trainer.client import LocalTrainer
from fedledger.trainer.data import synthetic_keyword_dataset
from fedledger.trainer.demo_setup import (
    DEMO_DELTA,
    demo_privacy_config,
    demo_train_config,
    last_layer_targets,
    load_demo_model,
)
from fedledger.trainer.models import get_adapter_state


def _layers(names):
    """Encoder layer numbers that carry LoRA weights."""
    return {int(re.search(r"layer\.(\d+)\.", n).group(1)) for n in names if "lora_" in n}


def test_last_layer_lora_trains_only_the_last_layer_and_the_head():
    # Execute
    model, _, _ = load_demo_model("tiny-bert", 0, lora="last")
    names = list(get_adapter_state(model))
    # Assert: tiny-bert has 2 layers; only layer 1 carries LoRA, and the classifier head is trained
    assert _layers(names) == {1}
    assert any("classifier" in n for n in names)
    assert {n.split(".")[-2] for n in names if "lora_" in n} == {"lora_A", "lora_B"}


def test_demo_default_lora_covers_every_layer():
    model, _, _ = load_demo_model("tiny-bert", 0)
    assert _layers(get_adapter_state(model)) == {0, 1}


def test_last_layer_targets_fall_back_to_defaults_for_other_architectures():
    from fedledger.trainer.models import tiny_model

    model, _ = tiny_model("llama", seed=0)
    assert last_layer_targets(model) is None


@pytest.mark.parametrize("epsilon", [0.0, -1.0, math.inf])
def test_no_privacy_without_a_finite_positive_epsilon(epsilon):
    assert demo_privacy_config(epsilon, rounds=3) is None


def test_privacy_config_spends_epsilon_over_all_rounds_with_poisson_sampling():
    config = demo_privacy_config(8.0, rounds=3)
    assert config is not None
    assert config.validate() is config
    assert (config.target_epsilon, config.target_delta, config.rounds) == (8.0, DEMO_DELTA, 3)
    assert config.poisson_sampling


def test_dp_runs_use_sgd_and_non_private_runs_adam():
    assert demo_train_config(epsilon=8.0).optimizer == "sgd"
    assert demo_train_config(epsilon=0.0).optimizer == "adamw"
    assert demo_train_config(epsilon=math.inf).optimizer == "adamw"
    assert demo_train_config(epsilon=8.0, epochs=1, learning_rate=0.5).learning_rate == 0.5


def test_demo_recipe_under_dp_changes_the_adapter_and_stays_within_budget():
    # Prepare: the demo's DP recipe on a tiny model, over all the rounds the budget covers
    model, tokenizer, _ = load_demo_model("tiny-bert", 0)
    rounds = 2
    privacy = demo_privacy_config(4.0, rounds=rounds)
    trainer = LocalTrainer(model, train=demo_train_config(epsilon=4.0, epochs=1), privacy=privacy, tokenizer=tokenizer)
    data = synthetic_keyword_dataset(64, seed=3)
    state = get_adapter_state(model)
    # Execute
    results = []
    for number in range(1, rounds + 1):
        results.append(trainer.train_round(state, data, round_id=number))
        state = {k: state[k] + results[-1].delta[k] for k in state}
    # Assert: the guard in train_round already checked every tensor changed; ε composes up to the target
    assert all(any(float(d.abs().max()) > 0 for d in r.delta.values()) for r in results)
    assert results[0].epsilon < results[1].epsilon <= 4.0 + 1e-6
    assert results[1].epsilon > 3.0

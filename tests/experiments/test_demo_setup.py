"""The demo's model, training and DP settings (trainer/demo_setup.py) on the tiny BERT."""

from __future__ import annotations

import math
import re

import pytest

from fedledger.experiments.demo_setup import (
    DEMO_DELTA,
    DEMO_TRAIN,
    DEMO_TRAIN_DP,
    demo_adapter,
    demo_privacy_config,
    demo_train_config,
    last_layer_targets,
    load_demo_model,
)
from fedledger.trainer.data import synthetic_keyword_dataset
from fedledger.trainer.local_trainer import LocalTrainer
from fedledger.trainer.models import get_adapter_state


def _layers(names):
    """Encoder layer numbers that carry LoRA weights."""
    layers = set()
    for name in names:
        if "lora_" in name:
            match = re.search(r"layer\.(\d+)\.", name)
            assert match is not None, f"LoRA weight {name} is in no encoder layer"
            layers.add(int(match.group(1)))
    return layers


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


def test_dp_runs_take_the_dp_recipe_and_adapter_and_non_private_runs_the_default():
    dp, plain = demo_train_config(epsilon=8.0), demo_train_config(epsilon=0.0)
    assert (dp.learning_rate, dp.batch_size, dp.epochs) == (
        DEMO_TRAIN_DP["learning_rate"],
        DEMO_TRAIN_DP["batch_size"],
        DEMO_TRAIN_DP["epochs"],
    )
    assert (plain.learning_rate, plain.epochs) == (DEMO_TRAIN["learning_rate"], DEMO_TRAIN["epochs"])
    assert demo_train_config(epsilon=math.inf).learning_rate == DEMO_TRAIN["learning_rate"]
    assert demo_train_config(epsilon=8.0, epochs=1, learning_rate=0.5).learning_rate == 0.5
    assert (demo_adapter(8.0), demo_adapter(0.0), demo_adapter(math.inf)) == ("pooler", "all", "all")


def test_pooler_lora_trains_only_the_pooler_and_the_head():
    model, _, _ = load_demo_model("tiny-bert", 0, lora="pooler")
    names = list(get_adapter_state(model))
    lora = [n for n in names if "lora_" in n]
    assert lora and all("pooler.dense" in n for n in lora)
    assert {n for n in names if "lora_" not in n} and all("classifier" in n for n in names if "lora_" not in n)
    # rank 1: lora_A is 1 x hidden, so the whole adapter stays small
    assert all(t.shape[0] == 1 for n, t in get_adapter_state(model).items() if "lora_A" in n)


def test_unknown_adapter_layout_is_refused():
    with pytest.raises(ValueError, match="'all', 'last' or 'pooler'"):
        load_demo_model("tiny-bert", 0, lora="everything")  # pyright: ignore[reportArgumentType]  # deliberately not an AdapterLayout: the validation under test


def test_demo_recipe_under_dp_changes_the_adapter_and_stays_within_budget():
    # Prepare: the demo's DP recipe on a tiny model, over all the rounds the budget covers
    model, tokenizer, _ = load_demo_model("tiny-bert", 0, lora=demo_adapter(4.0))
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

"""DP configuration checks and accounting against Opacus' own accountants."""

from __future__ import annotations

import math

import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant

from fedledger.trainer.data import to_tensor_dataset
from fedledger.trainer.local_trainer import LocalTrainer, TrainConfig
from fedledger.trainer.models import get_adapter_state
from fedledger.trainer.privacy import (
    PrivacyConfig,
    PrivacyConfigError,
    compute_epsilon,
    make_private,
    noise_multiplier_for,
)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "exactly one of target_epsilon"),
        ({"target_epsilon": 1.0, "noise_multiplier": 1.0}, "exactly one of target_epsilon"),
        ({"target_epsilon": -1.0}, "target_epsilon must be a finite number > 0"),
        ({"target_epsilon": math.inf}, "target_epsilon must be a finite number > 0"),
        ({"noise_multiplier": -0.5}, "noise_multiplier must be a finite number >= 0"),
        ({"noise_multiplier": 1.0, "target_delta": 0.0}, "target_delta must be in (0, 1)"),
        ({"noise_multiplier": 1.0, "max_grad_norm": 0.0}, "max_grad_norm must be a finite number > 0"),
        ({"noise_multiplier": 1.0, "accountant": "moments"}, "accountant must be one of"),
        ({"noise_multiplier": 1.0, "rounds": 0}, "rounds must be an integer >= 1"),
    ],
)
def test_each_config_error_is_reported(kwargs, fragment):
    # Execute
    with pytest.raises(PrivacyConfigError) as info:
        PrivacyConfig(**kwargs).validate()
    # Assert
    assert isinstance(info.value, ValueError)
    assert any(fragment in p for p in info.value.problems), info.value.problems


def test_all_config_errors_are_raised_at_once():
    config = PrivacyConfig(target_delta=2.0, max_grad_norm=-1.0, accountant="x", rounds=0)
    with pytest.raises(PrivacyConfigError) as info:
        config.validate()
    assert len(info.value.problems) == 5
    assert str(info.value).count("\n  - ") == 5


def test_valid_config_returns_itself():
    config = PrivacyConfig(target_epsilon=3.0)
    assert config.validate() is config


@pytest.mark.parametrize(("mechanism", "accountant_cls"), [("rdp", RDPAccountant), ("prv", PRVAccountant)])
def test_compute_epsilon_matches_opacus_accountant(mechanism, accountant_cls):
    # Prepare: Opacus' accountant stepped one step at a time
    sigma, q, steps, delta = 1.1, 0.05, 60, 1e-5
    reference = accountant_cls()
    for _ in range(steps):
        reference.step(noise_multiplier=sigma, sample_rate=q)
    # Execute
    eps = compute_epsilon([(sigma, q, steps)], delta=delta, accountant=mechanism)
    # Assert
    assert eps == pytest.approx(reference.get_epsilon(delta=delta), rel=1e-9)
    assert compute_epsilon([], delta=delta) == 0.0


def test_noise_multiplier_reaches_target_epsilon():
    sigma = noise_multiplier_for(target_epsilon=2.0, delta=1e-5, sample_rate=0.1, steps=30)
    eps = compute_epsilon([(sigma, 0.1, 30)], delta=1e-5)
    assert 1.9 <= eps <= 2.0


def test_impossible_target_epsilon_is_a_config_error():
    with pytest.raises(PrivacyConfigError, match="too small"):
        noise_multiplier_for(target_epsilon=1e-6, delta=1e-5, sample_rate=0.1, steps=100)


def _trainer(model, tokenizer, privacy, **train):
    return LocalTrainer(
        model,
        tokenizer=tokenizer,
        privacy=privacy,
        train=TrainConfig(batch_size=16, learning_rate=1e-2, max_length=24, **train),
    )


def test_reported_epsilon_matches_opacus_for_the_steps_taken(tiny_llama, keyword_data):
    # Prepare
    model, tokenizer = tiny_llama
    config = PrivacyConfig(noise_multiplier=1.3, max_grad_norm=0.5, target_delta=1e-4)
    trainer = _trainer(model, tokenizer, config)
    global_state = get_adapter_state(model)
    # Execute: two rounds
    first = trainer.train_round(global_state, keyword_data, round_id=1)
    second = trainer.train_round(global_state, keyword_data, round_id=2)
    # Assert: sample rate 1/batches, steps as taken, ε composed over both rounds
    batches = math.ceil(len(keyword_data) / 16)
    assert first.sample_rate == pytest.approx(1 / batches)
    assert first.noise_multiplier == 1.3
    reference = RDPAccountant()
    for _ in range(first.steps):
        reference.step(noise_multiplier=1.3, sample_rate=1 / batches)
    assert first.epsilon == pytest.approx(reference.get_epsilon(delta=1e-4), rel=1e-9)
    assert first.round_epsilon == pytest.approx(first.epsilon, rel=1e-9)
    for _ in range(second.steps):
        reference.step(noise_multiplier=1.3, sample_rate=1 / batches)
    assert second.epsilon == pytest.approx(reference.get_epsilon(delta=1e-4), rel=1e-9)
    assert first.epsilon is not None and second.epsilon is not None
    assert second.epsilon > first.epsilon
    assert second.round_epsilon == pytest.approx(first.round_epsilon, rel=1e-9)
    assert second.metadata()["delta"] == 1e-4


def test_target_epsilon_covers_all_planned_rounds(tiny_llama, keyword_data):
    model, tokenizer = tiny_llama
    trainer = _trainer(model, tokenizer, PrivacyConfig(target_epsilon=4.0, rounds=2))
    state = get_adapter_state(model)
    results = [trainer.train_round(state, keyword_data, round_id=r) for r in (1, 2)]
    assert results[0].epsilon is not None and results[1].epsilon is not None
    assert results[0].epsilon < 4.0
    assert 3.6 <= results[1].epsilon <= 4.0 + 1e-9


def test_ghost_clipping_trains_and_accounts(tiny_llama, keyword_data):
    model, tokenizer = tiny_llama
    trainer = _trainer(model, tokenizer, PrivacyConfig(noise_multiplier=1.0, ghost_clipping=True))
    result = trainer.train_round(get_adapter_state(model), keyword_data, round_id=1)
    assert math.isfinite(result.train_loss)
    assert result.sample_rate is not None
    assert result.epsilon == pytest.approx(
        compute_epsilon([(1.0, result.sample_rate, result.steps)], delta=1e-5), rel=1e-9
    )


def test_optimizer_over_foreign_parameters_is_refused(tiny_llama, keyword_data):
    # The opacus-820 shape: the optimizer holds tensors the (moved / re-wrapped) model no longer uses.
    model, tokenizer = tiny_llama
    stray = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(stray, lr=0.1)
    loader = torch.utils.data.DataLoader(to_tensor_dataset(keyword_data, tokenizer, max_length=24), batch_size=8)
    with pytest.raises(PrivacyConfigError, match="not the module's"):
        make_private(module=model, optimizer=optimizer, data_loader=loader, config=PrivacyConfig(noise_multiplier=1.0))


def test_session_close_removes_opacus_hooks(tiny_llama, keyword_data):
    model, tokenizer = tiny_llama
    params = [p for p in model.parameters() if p.requires_grad]
    loader = torch.utils.data.DataLoader(to_tensor_dataset(keyword_data, tokenizer, max_length=24), batch_size=8)
    session = make_private(
        module=model,
        optimizer=torch.optim.SGD(params, lr=0.1),
        data_loader=loader,
        config=PrivacyConfig(noise_multiplier=1.0),
    )
    assert session.epsilon() == 0.0
    session.close()
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())

"""InMemoryRounds screens exactly as the contract does, and the round driver's checkpoints refuse a stale state."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.experiments.in_memory import InMemoryRounds, accept_all
from fedledger.tensors import TensorFormatError, decode, encode
from fedledger.trainer.rounds import RoundDriver
from fedledger.trainer.strategy import FedAdam, StrategyStateError, load_strategy_state, save_strategy_state

from ..support import SHAPES, UpdateFactory, dp, participant_id, ready_round, tensors_bytes, zero_model

RULES = {"detector_min_updates": 4}


def _round_updates(seed: int) -> list[bytes]:
    factory = UpdateFactory(seed)
    payloads = [factory.bytes() for _ in range(5)]
    payloads[-1] = tensors_bytes({k: -10 * v for k, v in factory.honest().items()})
    return payloads


def test_verdicts_in_memory_equal_the_contracts(consortium):
    aggregator, trainers, _genesis = ready_round(consortium, trainers=5, rules=RULES)
    payloads = _round_updates(3)
    for trainer, payload in zip(trainers, payloads, strict=True):
        trainer.submit_update(1, payload, samples=100, privacy=dp(0.5), train_loss=0.4)
    aggregator.close_round(1)
    aggregator.finalize_round(1)
    on_chain = {u.participant: (u.status, u.score, u.reason) for u in aggregator.updates(1)}

    ledger = InMemoryRounds(decode(zero_model()), rules=RULES)
    ledger.open(1)
    for i, payload in enumerate(payloads):
        ledger.submit(
            1, participant_id("Org1MSP" if i % 2 == 0 else "Org2MSP", f"trainer{i}"), payload, samples=100, epsilon=0.5
        )
    ledger.screen(1)
    in_memory = {
        s.participant: ("accepted" if s.verdict.accepted else "rejected", s.verdict.score, s.verdict.reason)
        for s in ledger.rounds[1].submissions.values()
        if s.verdict is not None
    }
    assert in_memory == on_chain
    assert sum(status == "rejected" for status, _, _ in on_chain.values()) == 1


def test_a_payload_the_contract_would_refuse_is_refused_in_memory_too():
    ledger = InMemoryRounds(decode(zero_model()), rules=RULES)
    ledger.open(1)
    float64 = {k: np.zeros(s, np.float64) for k, s in SHAPES.items()}
    with pytest.raises(TensorFormatError, match="dtype F64"):
        ledger.submit(1, "a", tensors_bytes(float64), samples=10)
    assert ledger.rounds[1].submissions == {}


def test_the_driver_aggregates_only_accepted_updates_and_accept_all_keeps_the_attacker():
    outcomes = {}
    for name, screen in (("contract", None), ("none", accept_all)):
        ledger = InMemoryRounds(decode(zero_model()), rules=RULES, screen=screen)
        payloads = _round_updates(5)

        def collect(number: int, ledger: InMemoryRounds = ledger, payloads: list[bytes] = payloads) -> None:
            for i, payload in enumerate(payloads):
                ledger.submit(number, f"member-{i}", payload, samples=100)

        outcomes[name] = RoundDriver(ledger, collect=collect).run_round()
    assert [u["participant"] for u in outcomes["contract"].rejected] == ["member-4"]
    assert outcomes["none"].rejected == [] and len(outcomes["none"].accepted) == 5


def _fedadam_after_one_step() -> FedAdam:
    strategy = FedAdam(eta=0.1)
    base = decode(zero_model())
    strategy.aggregate_fit(1, base, [(decode(UpdateFactory(1).bytes()), 10)])
    return strategy


def test_a_strategy_checkpoint_restores_the_same_moments(tmp_path):
    strategy = _fedadam_after_one_step()
    path = tmp_path / "strategy.safetensors"
    save_strategy_state(strategy, path, model_hash="a" * 64)
    restored = FedAdam(eta=0.1)
    assert load_strategy_state(restored, path, model_hash="a" * 64)
    assert restored.moments.step == 1
    for name in strategy.moments.m:
        np.testing.assert_array_equal(restored.moments.m[name], strategy.moments.m[name])
        np.testing.assert_array_equal(restored.moments.v[name], strategy.moments.v[name])


def test_a_checkpoint_for_another_model_or_strategy_is_refused_and_the_previous_one_is_kept(tmp_path):
    path = tmp_path / "strategy.safetensors"
    assert not load_strategy_state(FedAdam(eta=0.1), path, model_hash="a" * 64)  # nothing saved yet
    save_strategy_state(_fedadam_after_one_step(), path, model_hash="a" * 64)
    save_strategy_state(_fedadam_after_one_step(), path, model_hash="b" * 64)  # written before a commit of "b"
    assert load_strategy_state(FedAdam(eta=0.1), path, model_hash="a" * 64)  # that commit never happened
    with pytest.raises(StrategyStateError, match="latest model is c"):
        load_strategy_state(FedAdam(eta=0.1), path, model_hash="c" * 64)
    with pytest.raises(StrategyStateError, match="strategy it started with"):
        load_strategy_state(FedAdam(eta=0.5), path, model_hash="b" * 64)


def test_genesis_in_another_dtype_fixes_the_dtype_of_every_commit():
    genesis = {k: np.zeros(s, np.float64) for k, s in SHAPES.items()}
    ledger = InMemoryRounds(genesis, rules=RULES)
    assert {spec[1] for spec in ledger.manifest.values()} == {"F64"}
    ledger.open(1)
    with pytest.raises(TensorFormatError, match="dtype F32; the base model has F64"):
        ledger.submit(1, "a", encode(genesis), samples=10)

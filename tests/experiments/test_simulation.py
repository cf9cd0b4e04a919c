"""A full tiny federated run in memory."""

from __future__ import annotations

import math

import numpy as np

from fedledger.anomaly.screening import Verdict
from fedledger.experiments.attacks import Attack, AttackConfig
from fedledger.experiments.simulation import SimulationConfig, run_simulation
from fedledger.trainer.data import synthetic_keyword_dataset
from fedledger.trainer.local_trainer import TrainConfig
from fedledger.trainer.privacy import PrivacyConfig
from fedledger.trainer.strategy import FedAdam

TRAIN = TrainConfig(batch_size=16, learning_rate=1e-2, max_length=24)


def test_federated_run_learns_the_task(tiny_llama):
    model, tokenizer = tiny_llama
    result = run_simulation(
        model,
        tokenizer,
        synthetic_keyword_dataset(240, seed=0),
        config=SimulationConfig(num_clients=3, rounds=3),
        train=TRAIN,
    )
    assert len(result.rounds) == 3
    final = result.rounds[-1].metrics
    assert final["accuracy"] > result.initial_metrics["accuracy"] + 0.2
    assert final["loss"] < result.initial_metrics["loss"]
    assert all(c.accepted and len(c.sha256) == 64 for r in result.rounds for c in r.clients)
    assert "accuracy" in result.table()


def test_dp_run_with_dirichlet_clients_reports_budget_and_finite_metrics(tiny_llama):
    model, tokenizer = tiny_llama
    result = run_simulation(
        model,
        tokenizer,
        synthetic_keyword_dataset(160, seed=1),
        config=SimulationConfig(num_clients=4, rounds=2, partition="dirichlet", alpha=0.5),
        train=TRAIN,
        privacy=PrivacyConfig(noise_multiplier=1.0),
        strategy=FedAdam(eta=0.02),
    )
    for report in result.rounds:
        assert all(math.isfinite(v) for v in report.metrics.values())
    eps = [c.metadata["epsilon"] for c in result.rounds[-1].clients]
    assert all(0 < e < 100 for e in eps)
    assert all(c.metadata["epsilon"] < e for c, e in zip(result.rounds[0].clients, eps, strict=True))


def test_attacker_update_is_transformed_and_can_be_vetoed(tiny_llama):
    model, tokenizer = tiny_llama
    seen = []

    def screen(number, rules, updates, direction):
        norms = [u["l2_norm"] for u in updates]  # the features the contract computes, in participant order
        seen.append(norms)
        return [Verdict(n < 3 * float(np.median(norms)), None, None, "norm veto") for n in norms]

    result = run_simulation(
        model,
        tokenizer,
        synthetic_keyword_dataset(120, seed=2),
        config=SimulationConfig(num_clients=4, rounds=1),
        train=TRAIN,
        attacks={0: AttackConfig(kind=Attack.SCALING, scale=50.0)},
        screen=screen,
    )
    clients = result.rounds[0].clients
    assert clients[0].attack == "scaling" and not clients[0].accepted
    assert all(c.accepted for c in clients[1:])
    assert seen[0][0] > 10 * max(seen[0][1:])

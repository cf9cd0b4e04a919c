"""Secret-shared sketch mode of the in-memory rounds (issue 13) and the shared-mode study's comparisons."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.anomaly.features import SKETCH_BLOCKS, count_sketch, decode_sketch
from fedledger.bench.robustness.shared_mode import compare, summarise
from fedledger.chaincode.share_protocol import seed_number
from fedledger.experiments.in_memory import InMemoryRounds, SketchMode
from fedledger.tensors import encode

GENESIS = {"layer.a": np.zeros((40, 8), dtype=np.float32), "layer.b": np.zeros(30, dtype=np.float32)}
MEMBERS = 8
ATTACKER = "m3"


def _updates(rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    """Honest members: one common direction plus their own noise; the attacker sends its update scaled x10."""
    common = {k: rng.normal(size=v.shape) for k, v in GENESIS.items()}
    out = {}
    for i in range(MEMBERS):
        delta = {
            k: (0.01 * (common[k] + 0.3 * rng.normal(size=v.shape))).astype(np.float32) for k, v in GENESIS.items()
        }
        if f"m{i}" == ATTACKER:
            delta = {k: v * 10 for k, v in delta.items()}
        out[f"m{i}"] = delta
    return out


def _round(ledger: InMemoryRounds, number: int, updates: dict[str, dict[str, np.ndarray]]) -> None:
    ledger.open(number)
    for name, delta in updates.items():
        ledger.submit(number, name, encode(delta, like=ledger.manifest), samples=50)
    ledger.screen(number)


def _verdicts(ledger: InMemoryRounds, number: int) -> dict[str, bool]:
    return {p: bool(h.verdict and h.verdict.accepted) for p, h in ledger.rounds[number].submissions.items()}


def _commit(ledger: InMemoryRounds, number: int) -> None:
    used = ledger.contributions(number)
    total = sum(c.weight for c in used)
    base = ledger.base_state(number)
    state = {k: base[k] + sum(c.weight * c.delta[k] for c in used) / total for k in base}
    ledger.commit(number, {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}, used, {})


@pytest.mark.parametrize("mode", ["plaintext", "shared"])
def test_both_modes_reject_an_obvious_scaling_attacker(mode: SketchMode):
    ledger = InMemoryRounds(GENESIS, sketch_mode=mode, close_seed=1)
    _round(ledger, 1, _updates(np.random.default_rng(0)))
    verdicts = _verdicts(ledger, 1)
    assert not verdicts[ATTACKER]
    assert all(verdicts[p] for p in verdicts if p != ATTACKER)
    if mode == "shared":  # plaintext mode on the same submissions decides the same
        plain = ledger.rounds[1].plaintext_verdicts
        assert {p: v.accepted for p, v in plain.items()} == verdicts


def test_shared_features_are_the_count_sketch_under_the_rounds_seed_and_the_direction_under_the_next():
    rng = np.random.default_rng(1)
    ledger = InMemoryRounds(GENESIS, sketch_mode="shared", close_seed=2)
    dim = ledger.rules.sketch_dim
    _round(ledger, 1, _updates(rng))
    first = ledger.rounds[1]
    seed = seed_number(first.sketch_seed)
    for held in first.submissions.values():
        expected = count_sketch(held.delta, dim, seed=seed, blocks=SKETCH_BLOCKS)
        got = decode_sketch(held.features["sketch"])
        # float32 storage (relative 6e-8) plus fixed-point rounding (<= 2^-33 per coordinate, summed per bucket)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
        assert held.features["source"] == "share-sketches"
        # the projection is the round's, not the public fixed-seed one plaintext mode uses
        assert not np.allclose(decode_sketch(held.plain_features["sketch"]), got, rtol=1e-3, atol=1e-6)
    _commit(ledger, 1)
    assert ledger.previous_direction(2) == []  # round 2 has no seed yet: no one can know its projection
    _round(ledger, 2, _updates(rng))
    second = ledger.rounds[2]
    assert second.sketch_seed != first.sketch_seed
    used = ledger.contributions(1)
    total = sum(c.weight for c in used)
    mean = {k: np.sum([c.weight * c.delta[k].astype(np.float64) for c in used], axis=0) / total for k in GENESIS}
    expected = count_sketch(mean, dim, seed=seed_number(second.sketch_seed), blocks=SKETCH_BLOCKS)
    np.testing.assert_allclose(ledger.previous_direction(2), expected, rtol=1e-9, atol=1e-7)


def _cell(mode: str, rejected: list[list[int]], plaintext_rejected: list[list[int]] | None = None) -> dict:
    rounds = []
    for i, rej in enumerate(rejected):
        row = {"round": i + 1, "rejected": rej, "tpr": float(0 in rej), "fpr": 0.0, "accuracy": 0.8 + i / 100}
        if plaintext_rejected is not None:
            row |= {
                "plaintext_rejected": plaintext_rejected[i],
                "rules": {0: "norm-bound", 1: "within-limits"},
                "plaintext_rules": {0: "norm-bound", 1: "extreme-deviation"},
                "weights": {1: 600_000, 2: 400_000},
                "plaintext_weights": {1: 500_000, 2: 500_000},
            }
        rounds.append(row)
    return {
        "seed": 0,
        "attack": "scaling",
        "mode": mode,
        "malicious": [0],
        "client_samples": [1, 1, 1],
        "rounds": rounds,
    }


def test_comparisons_count_agreeing_verdicts_and_name_the_rules_of_the_disagreements():
    plain = _cell("plaintext", [[0], [0, 1]])
    shared = _cell("shared", [[0], [0]], plaintext_rejected=[[0], [0, 1]])
    row = compare(plain, shared)
    assert row["runs_agreement"] == pytest.approx(5 / 6) and row["paired_agreement"] == pytest.approx(5 / 6)
    assert row["first_divergent_round"] == 2
    assert row["paired_flips"] == [[2, 1, False, "within-limits", "extreme-deviation"]]
    assert row["paired_weight_shift"] == pytest.approx(0.1)
    (summary,) = summarise([row])
    assert summary["paired_flips"] == 1 and summary["diverged_seeds"] == 1

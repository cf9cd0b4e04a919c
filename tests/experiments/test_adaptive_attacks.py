"""Adaptive attacks: each meets its own constraint at the boundary, and the detector-aware one is accepted by the
very detector the contract runs (which is what makes it a yardstick)."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.chaincode.records import Rules
from fedledger.experiments.adaptive_attacks import (
    detector_oracle,
    min_max,
    min_sum,
    perturbation,
    sybils,
    under_the_threshold,
)
from fedledger.tensors import encode

SHAPES = {"a.lora_A": (8, 32), "a.lora_B": (32, 8)}


def honest_round(n: int = 12, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    direction = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    return [
        {k: (0.01 * direction[k] + 0.005 * rng.normal(size=s)).astype(np.float32) for k, s in SHAPES.items()}
        for _ in range(n)
    ]


def flat(state: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([state[k].astype(np.float64).ravel() for k in sorted(state)])


def test_min_max_sits_on_its_boundary_and_points_against_the_mean() -> None:
    honest = honest_round()
    matrix = np.stack([flat(h) for h in honest])
    bound = max(np.linalg.norm(a - b) for a in matrix for b in matrix)
    attack = flat(min_max(honest))
    farthest = max(np.linalg.norm(attack - h) for h in matrix)
    assert farthest <= bound * (1 + 1e-6) and farthest >= bound * (1 - 1e-3)
    mean = matrix.mean(axis=0)
    assert np.dot(attack - mean, mean) < 0  # pushed against the honest direction


def test_min_sum_sits_on_its_boundary() -> None:
    honest = honest_round()
    matrix = np.stack([flat(h) for h in honest])
    bound = max(((matrix - h) ** 2).sum() for h in matrix)
    attack = flat(min_sum(honest, kind="std"))
    total = ((matrix - attack) ** 2).sum()
    assert bound * (1 - 1e-3) <= total <= bound * (1 + 1e-6)


@pytest.mark.parametrize("kind", ["unit", "sign"])
def test_perturbations_oppose_the_honest_mean(kind) -> None:
    honest = honest_round()
    mean = np.stack([flat(h) for h in honest]).mean(axis=0)
    assert np.dot(flat(perturbation(honest, kind)), mean) < 0


def test_the_std_perturbation_is_minus_the_coordinate_spread() -> None:
    honest = honest_round()
    matrix = np.stack([flat(h) for h in honest])
    np.testing.assert_allclose(flat(perturbation(honest, "std")), -matrix.std(axis=0), rtol=1e-6)


def test_sybils_are_not_byte_copies_but_pull_the_same_way() -> None:
    base = honest_round(1)[0]
    copies = sybils(base, 4, jitter=1e-3, seed=3)
    assert len({encode(c) for c in copies}) == 4  # the contract's copy refusal does not catch them
    for copy in copies:
        relative = np.linalg.norm(flat(copy) - flat(base)) / np.linalg.norm(flat(base))
        cosine = np.dot(flat(copy), flat(base)) / (np.linalg.norm(flat(copy)) * np.linalg.norm(flat(base)))
        assert 5e-4 < relative < 2e-3 and cosine > 0.999
    assert [encode(c) for c in sybils(base, 4, jitter=1e-3, seed=3)] == [encode(c) for c in copies]


def test_the_threshold_aware_attack_is_accepted_by_the_contracts_own_detector() -> None:
    honest = honest_round(16)
    rules = Rules(detector_min_updates=4)
    accepted = detector_oracle(2, rules, honest, copies=4)
    attack, gamma = under_the_threshold(honest, accepted, max_scale=50.0)
    assert accepted(attack)
    assert gamma > 0  # it does get some malicious push through
    pushed_further = under_the_threshold(honest, lambda _s: True, max_scale=min(50.0, 4 * gamma + 1))[0]
    assert not accepted(pushed_further)  # and the detector stops it beyond the boundary it found

"""Adaptive attacks: each meets its own constraint at the boundary, and the detector-aware one is accepted by the
very detector the contract runs (which is what makes it a yardstick)."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.chaincode.records import Rules
from fedledger.experiments.adaptive_attacks import (
    JITTERS,
    detector_oracle,
    min_max,
    min_sum,
    perturbation,
    rehearse,
    sybils,
    tuned_under_the_threshold,
    under_the_threshold,
)
from fedledger.experiments.in_memory import InMemoryRounds, SubmissionRefused
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


def _participants(n: int) -> list[str]:
    return [f"client-{i:03d}" for i in range(n)]


def _two_rounds(rules: Rules) -> tuple[InMemoryRounds, list[dict[str, np.ndarray]], list[str], list[int]]:
    """A ledger whose round 1 is screened (so round 2 has a previous direction), and round 2's honest updates,
    participants (client order) and declared samples."""
    genesis = {k: np.zeros(shape, np.float32) for k, shape in SHAPES.items()}
    ledger = InMemoryRounds(genesis, rules=rules)
    ledger.open(1)
    names = _participants(16)
    for name, update in zip(names, honest_round(16, seed=5), strict=True):
        ledger.submit(1, name, encode(update, like=ledger.manifest), samples=50)
    ledger.screen(1)
    ledger.open(2)
    declared = [10 + 7 * i for i in range(16)]
    return ledger, honest_round(16, seed=6), names, declared


def test_rehearse_gives_the_verdicts_the_round_then_gets() -> None:
    rules = Rules(detector_min_updates=4)
    ledger, updates, names, declared = _two_rounds(rules)
    bad = {3, 8, 11, 14}  # interleaved with the honest clients, as in the study
    for i in bad:
        updates[i] = {k: -10 * v for k, v in updates[i].items()}
        declared[i] = 5_000  # inflated, as the study's attackers declare
    submissions = list(zip(names, updates, declared, strict=True))
    direction = ledger.previous_direction(2)
    assert direction  # round 1's accepted direction is part of what the detector sees
    rehearsed = rehearse(2, rules, submissions[::-1], manifest=ledger.manifest, previous_direction=direction)
    for name, update, samples in submissions:  # submitted in client order
        ledger.submit(2, name, encode(update, like=ledger.manifest), samples=samples)
    ledger.screen(2)
    real = {s.participant: s.verdict for s in ledger.rounds[2].submissions.values()}
    assert rehearsed == real  # every field: accepted, score, threshold, reason, rule, deviation
    assert not all(v is not None and v.accepted for v in real.values())  # and the round did reject something
    without_direction = rehearse(2, rules, submissions, manifest=ledger.manifest)
    assert without_direction.keys() == real.keys()


def test_the_oracle_says_what_the_round_decides_for_the_colluders_copies() -> None:
    rules = Rules(detector_min_updates=4)
    ledger, updates, names, declared = _two_rounds(rules)
    bad = [2, 9, 13]
    honest = [(names[i], updates[i], declared[i]) for i in range(16) if i not in bad]
    attackers = [(names[i], 400) for i in bad]

    def copies(update: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        return sybils(update, len(bad), jitter=0.2, seed=1)

    oracle = detector_oracle(
        2,
        rules,
        honest,
        attackers,
        copies=copies,
        manifest=ledger.manifest,
        previous_direction=ledger.previous_direction(2),
    )
    mean = {k: np.mean([u[k] for _, u, _ in honest], axis=0) for k in SHAPES}
    answers = []
    for candidate in (mean, {k: -20 * v for k, v in mean.items()}):
        submitted = dict(zip(bad, copies(candidate), strict=True))
        trial = InMemoryRounds({k: np.zeros(s, np.float32) for k, s in SHAPES.items()}, rules=rules)
        trial.rounds = {1: ledger.rounds[1]}  # the same round 1, hence the same previous direction
        trial.open(2)
        for i, name in enumerate(names):
            update, samples = (submitted[i], 400) if i in bad else (updates[i], declared[i])
            trial.submit(2, name, encode(update, like=trial.manifest), samples=samples)
        trial.screen(2)
        accepted = {
            s.participant: s.verdict is not None and s.verdict.accepted for s in trial.rounds[2].submissions.values()
        }
        answers.append(oracle(candidate))
        assert answers[-1] == all(accepted[names[i]] for i in bad)
    assert answers == [True, False]  # copies of the honest mean pass, a scaled sign flip of it does not
    with pytest.raises(ValueError, match="3 attackers"):
        detector_oracle(2, rules, honest, attackers, copies=lambda u: [u], manifest=ledger.manifest)(mean)


def test_the_threshold_aware_attack_is_accepted_by_the_contracts_own_detector() -> None:
    rules = Rules(detector_min_updates=4)
    ledger, updates, names, declared = _two_rounds(rules)
    honest = [(names[i], updates[i], declared[i]) for i in range(12)]
    attackers = [(names[i], declared[i]) for i in range(12, 16)]
    direction = ledger.previous_direction(2)

    def oracle_for(jitter: float):
        return detector_oracle(
            2,
            rules,
            honest,
            attackers,
            copies=lambda u: sybils(u, 4, jitter=jitter, seed=2),
            manifest=ledger.manifest,
            previous_direction=direction,
        )

    attack, gamma, jitter = tuned_under_the_threshold(updates[:12], oracle_for, max_scale=50.0, steps=12)
    accepted = oracle_for(jitter)
    assert accepted(attack) and jitter in JITTERS
    assert gamma > 0  # it does get some malicious push through
    further = under_the_threshold(updates[:12], lambda _s: True, max_scale=min(50.0, 4 * gamma + 1))[0]
    assert not accepted(further)  # and the detector stops it beyond the boundary it found


def test_the_tuned_attack_takes_the_smallest_jitter_that_passes_then_the_largest_push() -> None:
    honest = honest_round(8)
    matrix = np.stack([flat(h) for h in honest])
    mean, median_norm = matrix.mean(axis=0), float(np.median(np.linalg.norm(matrix, axis=1)))
    tried: list[float] = []

    def oracle_for(jitter: float):
        tried.append(jitter)
        # copies need jitter >= 0.1 to pass; then pushes up to 1.5 honest median norms from the mean pass
        return lambda c: bool(jitter >= 0.1 and np.linalg.norm(flat(c) - mean) <= 1.5 * median_norm)

    attack, gamma, jitter = tuned_under_the_threshold(honest, oracle_for, steps=20)
    assert jitter == 0.1 and tried == [j for j in JITTERS if j <= 0.1]
    assert gamma == pytest.approx(1.5, rel=1e-3)
    assert np.dot(flat(attack) - mean, mean) < 0
    nothing, zero, largest = tuned_under_the_threshold(honest, lambda _j: lambda _c: False)
    assert zero == 0.0 and largest == JITTERS[-1]
    np.testing.assert_allclose(flat(nothing), mean, rtol=1e-5)


def test_rehearse_and_the_rounds_refuse_what_submit_update_refuses() -> None:
    rules = Rules(detector_min_updates=4, max_update_norm=5.0)
    ledger, updates, names, declared = _two_rounds(rules)
    big = {k: 1e3 * v for k, v in updates[1].items()}  # far over the norm bound
    submissions = [(names[i], updates[i], declared[i]) for i in range(16)]
    submissions[1] = (names[1], big, declared[1])
    submissions[5] = (names[5], updates[4], declared[5])  # a byte copy of client 4's update
    rehearsed = rehearse(
        2, rules, submissions, manifest=ledger.manifest, previous_direction=ledger.previous_direction(2)
    )
    assert names[1] not in rehearsed and names[5] not in rehearsed and len(rehearsed) == 14
    ledger.refuse = True
    errors = []
    for name, update, samples in submissions:
        try:
            ledger.submit(2, name, encode(update, like=ledger.manifest), samples=samples)
        except SubmissionRefused as error:
            errors.append(str(error))
    assert len(errors) == 2 and "norm" in errors[0] and "exact bytes" in errors[1]
    ledger.screen(2)
    real = {s.participant: s.verdict for s in ledger.rounds[2].submissions.values()}
    assert rehearsed == real

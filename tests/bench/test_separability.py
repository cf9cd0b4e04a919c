"""The separability analysis' pure parts on constructed rounds: its AUCs and the memory rule it replays."""

from __future__ import annotations

import numpy as np

from fedledger.bench.robustness.separability import Observed, contract_rates, replay_memory_rule, separability

HONEST = [f"h{i}" for i in range(9)]


def _round(centre: list[float], previous: list[float] | None, nearest: list[float]) -> dict[str, object]:
    """A round as ``recording_screen`` stores it: the cosines, ``round_features``' columns turned around."""
    n = len(centre)
    cosines = np.ones((n, 6))
    cosines[:, 1] = centre
    cosines[:, 2] = previous if previous is not None else 1.0  # round 1: no previous direction (distance 0)
    cosines[:, 5] = nearest
    return {"names": [*HONEST, "bad"], "cosines": cosines}


def _cell(attack: str, bad_centre: float, rounds: int = 4) -> Observed:
    rng = np.random.default_rng(0)
    seen = []
    for r in range(rounds):
        honest = rng.uniform(0.2, 0.5, len(HONEST)).tolist()
        previous = None if r == 0 else [*rng.uniform(-0.5, -0.2, len(HONEST)).tolist(), -bad_centre]
        seen.append(_round([*honest, bad_centre], previous, [0.4] * (len(HONEST) + 1)))
    return Observed(attack, 0, {"bad"}, seen, [set() for _ in seen])


def test_an_attacker_always_below_the_honest_centre_cosines_is_perfectly_separated_per_round_and_over_rounds() -> None:
    rows = {r["feature"]: r for r in separability([_cell("sign_flip", -0.4)])}
    assert rows["centre cosine"]["per-round AUC"] == 1.0
    assert rows["previous cosine"]["AUC of the per-member means over the rounds"] == 1.0
    assert rows["nearest similarity"]["per-round AUC"] == 0.5  # every update at the same similarity: chance


def test_the_memory_rule_rejects_a_persistent_outlier_only_once_it_has_k_rounds_of_history() -> None:
    cells = [_cell("sign_flip", -0.4)]
    tpr_k1, fpr_k1 = replay_memory_rule(cells, z=2.0, k=1)["sign_flip"]
    tpr_k3, _ = replay_memory_rule(cells, z=2.0, k=3)["sign_flip"]
    assert tpr_k1 == 1.0 and fpr_k1 == 0.0
    assert tpr_k3 == 0.5  # rounds 3 and 4 of 4
    tpr_inside, _ = replay_memory_rule([_cell("sign_flip", 0.35)], z=2.0, k=1)["sign_flip"]
    assert tpr_inside == 0.0  # inside the honest range: never rejected


def test_the_contract_rates_count_the_recorded_rejections() -> None:
    cell = _cell("label_flip", 0.3, rounds=2)
    cell.rejected = [{"bad"}, {"bad", "h0"}]
    tpr, fpr = contract_rates([cell])["label_flip"]
    assert tpr == 1.0 and fpr == 1 / 18


def test_the_fpr_at_tpr_is_the_honest_share_above_the_most_lenient_threshold_catching_enough_attackers() -> None:
    from fedledger.bench.robustness.separability import fpr_at_tpr

    honest = [0.1, 0.2, 0.3, 0.4, 0.5]
    assert fpr_at_tpr(honest, [0.6, 0.7], higher=True) == 0.0
    assert fpr_at_tpr(honest, [0.35, 0.9], higher=True) == 0.4  # catching 0.35 also rejects 0.4 and 0.5
    assert fpr_at_tpr(honest, [0.15], higher=False) == 0.2  # attackers lower: rejecting <= 0.15 takes 0.1 too

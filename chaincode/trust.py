"""Trust scores and reward split: pure functions of ledger data, documented in README.

Trust is a beta-reputation score over a participant's verdicts:
    trust = (a + accepted) / (a + b + accepted + w * rejected)
with prior pseudo-counts a (accepted) and b (rejected) and a weight w > 1 that makes one rejected
update cost more trust than one accepted update earns. A participant whose trust falls below
``trust_suspend_below`` after a round is suspended automatically.

Rewards: a finalised round pays ``reward_per_round`` units to its accepted updates in proportion to
    contribution = samples * trust_at_submit
i.e. the weight the update carries in sample-weighted FedAvg, scaled by how reliable its author
had been. Amounts are integers; the pool is split exactly (largest remainder, ties by participant
id), so the sum of all balances always equals the sum of the pools paid.
"""

from __future__ import annotations

from fedledger.chaincode.records import Rules


def trust_score(rules: Rules, accepted: int, rejected: int) -> float:
    numerator = rules.trust_prior_accepted + accepted
    denominator = (
        rules.trust_prior_accepted + rules.trust_prior_rejected + accepted + rules.trust_rejection_weight * rejected
    )
    return round(numerator / denominator, 6) if denominator > 0 else 1.0


def split_pool(pool: int, contributions: dict[str, float]) -> dict[str, int]:
    """Splits ``pool`` integer units proportionally; the parts always sum to ``pool`` (or 0 if no one)."""
    total = sum(contributions.values())
    if not contributions or pool <= 0:
        return {pid: 0 for pid in contributions}
    if total <= 0:  # every contribution is zero: split evenly
        contributions = {pid: 1.0 for pid in contributions}
        total = float(len(contributions))
    exact = {pid: pool * c / total for pid, c in contributions.items()}
    amounts = {pid: int(value) for pid, value in exact.items()}
    remainder = pool - sum(amounts.values())
    by_fraction = sorted(exact, key=lambda pid: (-(exact[pid] - amounts[pid]), pid))
    for pid in by_fraction[:remainder]:
        amounts[pid] += 1
    return amounts

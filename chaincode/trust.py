"""Trust scores and reward split: pure functions of ledger data, documented in README.

Trust is a beta-reputation score over a participant's verdicts:
    trust = (a + accepted) / (a + b + accepted + w * rejected)
with prior pseudo-counts a (accepted) and b (rejected) and a weight w > 1 that makes one rejected
update cost more trust than one accepted update earns. A participant whose trust falls below
``trust_suspend_below`` after a round is suspended automatically.

Rewards: a finalised round pays ``reward_per_round`` units to its accepted updates in proportion to
    contribution = weight * trust_at_submit
i.e. the (capped) weight the update carries in FedAvg, scaled by how reliable its author had been, and
capped again per participant and per organisation (fedledger.chaincode.weights). Amounts are integers;
the pool is split exactly (largest remainder, ties by participant id), so the sum of all balances
always equals the sum of the pools paid.
"""

from __future__ import annotations

from fedledger.chaincode.records import Rules


def trust_score(rules: Rules, accepted: int, rejected: int) -> float:
    numerator = rules.trust_prior_accepted + accepted
    denominator = (
        rules.trust_prior_accepted + rules.trust_prior_rejected + accepted + rules.trust_rejection_weight * rejected
    )
    return round(numerator / denominator, 6) if denominator > 0 else 1.0

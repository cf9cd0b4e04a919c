"""Applying verdicts: participant trust and round payouts, shared by FinalizeRound and disputes."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from fedledger.chaincode import keys, state
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.records import Participant, Payout, Round, Rules, Update
from fedledger.chaincode.standing import write_participant
from fedledger.chaincode.trust import trust_score
from fedledger.chaincode.weights import accepted_weights, capped_shares, quantise


def apply_verdict_to_participant(
    ctx: LedgerContext, rules: Rules, participant_id: str, accepted_delta: int, rejected_delta: int
) -> Participant:
    """Moves the participant's verdict counts, recomputes trust, suspends or reinstates automatically."""
    participant = state.require(ctx, Participant, keys.PARTICIPANT, [participant_id], f"participant {participant_id}")
    accepted = participant.accepted_count + accepted_delta
    rejected = participant.rejected_count + rejected_delta
    trust = trust_score(rules, accepted, rejected + participant.inherited_rejected)
    status, reason, auto = participant.status, participant.status_reason, participant.auto_suspended
    if status == "active" and trust < rules.trust_suspend_below:
        status, auto = "suspended", True
        reason = f"trust {trust} fell below {rules.trust_suspend_below} after rejected updates"
    elif status == "suspended" and auto and trust >= rules.trust_suspend_below:
        status, reason, auto = "active", "", False
    updated = dataclasses.replace(
        participant,
        accepted_count=accepted,
        rejected_count=rejected,
        trust=trust,
        status=status,
        status_reason=reason,
        auto_suspended=auto,
    )
    write_participant(ctx, updated)
    return updated


def settle_round(ctx: LedgerContext, rules: Rules, record: Round, updates: list[Update]) -> list[Update]:
    """(Re)writes every update of the round with its FedAvg weight, and its payout, from the current verdicts.

    Weight: accepted updates split WEIGHT_UNITS in proportion to their samples (bounded by the round's median,
    clipped by norm: ``weights.weight_values``), capped per participant and per organisation. Reward: the pool
    split in proportion to weight x trust at submission, capped the same way.
    Returns the updates as written.
    """
    caps = {"participant_cap": rules.max_participant_share, "organisation_cap": rules.max_organisation_share}
    accepted = [u for u in updates if u.status == "accepted"]
    weights = accepted_weights(rules, [(u.participant, u.samples, u.features) for u in accepted])
    contributions = capped_shares(
        {u.participant: weights[u.participant] * Fraction(u.trust_at_submit) for u in accepted}, **caps
    ).shares
    amounts = quantise(record.reward_pool, contributions)
    written = []
    for update in updates:
        weighted = dataclasses.replace(update, weight=weights.get(update.participant, 0))
        state.write(ctx, keys.UPDATE, [keys.round_attr(record.number), update.participant], weighted)
        written.append(weighted)
        payout = Payout(
            round=record.number,
            participant=update.participant,
            amount=amounts.get(update.participant, 0),
            contribution=round(float(contributions.get(update.participant, 0)), 6),
            tx_id=ctx.get_tx_id(),
        )
        state.write(ctx, keys.PAYOUT, [update.participant, keys.round_attr(record.number)], payout)
    return written

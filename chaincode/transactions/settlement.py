"""Applying verdicts: participant trust and round payouts, shared by FinalizeRound and disputes."""

from __future__ import annotations

import dataclasses

from fedledger.chaincode import keys, state
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.records import Participant, Payout, Round, Rules, Update
from fedledger.chaincode.trust import split_pool, trust_score


def apply_verdict_to_participant(
    ctx: LedgerContext, rules: Rules, participant_id: str, accepted_delta: int, rejected_delta: int
) -> Participant:
    """Moves the participant's verdict counts, recomputes trust, suspends or reinstates automatically."""
    participant = state.require(ctx, Participant, keys.PARTICIPANT, [participant_id], f"participant {participant_id}")
    accepted = participant.accepted_count + accepted_delta
    rejected = participant.rejected_count + rejected_delta
    trust = trust_score(rules, accepted, rejected)
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
    state.write(ctx, keys.PARTICIPANT, [participant_id], updated)
    return updated


def pay_round(ctx: LedgerContext, record: Round, updates: list[Update]) -> dict[str, int]:
    """(Re)writes the payout of every update of the round from the current verdicts."""
    contributions = {u.participant: u.samples * u.trust_at_submit for u in updates if u.status == "accepted"}
    amounts = split_pool(record.reward_pool, contributions)
    for update in updates:
        payout = Payout(
            round=record.number,
            participant=update.participant,
            amount=amounts.get(update.participant, 0),
            contribution=round(contributions.get(update.participant, 0.0), 6),
            tx_id=ctx.get_tx_id(),
        )
        state.write(ctx, keys.PAYOUT, [update.participant, keys.round_attr(record.number)], payout)
    return amounts

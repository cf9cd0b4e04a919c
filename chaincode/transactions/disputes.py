"""Disputes: contest a verdict; other organisations rule on it within a deadline, one vote each.

- The owner of a rejected update may contest the rejection; any registered member may contest
  an accepted update. Filing is open for ``dispute_window_seconds`` after FinalizeRound.
- Organisations vote, not identities: the first auditor of an organisation to vote casts its organisation's
  one vote (one key per organisation: no hot key, and registering more auditors buys nothing). Neither the
  update owner's organisation nor the filer's votes: both are parties. Voting is open until
  ``dispute_voting_seconds`` after filing.
- ResolveDispute rules once ``dispute_quorum`` organisations voted (majority; a tie upholds the verdict),
  or, after the voting deadline without quorum, expires the dispute and the verdict stands. In a consortium of
  two organisations a contested acceptance therefore always expires: no third party exists to rule on it.
- Overturning flips the update's verdict, moves the owner's trust, and re-splits the round's
  reward pool (balances stay conserved). The anomaly record stays: it is immutable history.
"""

from __future__ import annotations

import dataclasses

from fedledger.chaincode import keys, state
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import parse_choice, parse_text
from fedledger.chaincode.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied
from fedledger.chaincode.events import emit
from fedledger.chaincode.guards import require_participant
from fedledger.chaincode.records import Dispute, Round, Update, Vote
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.transactions.finalize import RULE_SHARE_REFUSED
from fedledger.chaincode.transactions.rounds import parse_round, require_round
from fedledger.chaincode.transactions.settlement import apply_verdict_to_participant, settle_round
from fedledger.chaincode.transactions.updates import require_update, round_updates, rules_of
from fedledger.chaincode.weights import organisation_of


def _dispute_key(number: int, participant_id: str) -> list[str]:
    return [keys.round_attr(number), participant_id]


def require_dispute(ctx: LedgerContext, number: int, participant_id: str) -> Dispute:
    return state.require(
        ctx,
        Dispute,
        keys.DISPUTE,
        _dispute_key(number, participant_id),
        f"dispute on the update of {participant_id} in round {number}",
    )


@transaction("OpenDispute")
def open_dispute(ctx: LedgerContext, round_number: str, participant_id: str, reason: str) -> Dispute:
    # A member suspended by the very rejection it contests must still be able to contest it.
    filer = require_participant(ctx, allow_suspended=True)
    number = parse_round(round_number)
    record = require_round(ctx, number)
    text = parse_text("a dispute's reason", reason, max_bytes=rules_of(ctx, record).max_text_bytes)
    update = require_update(ctx, number, participant_id)
    if filer.status != "active" and not (filer.id == participant_id and update.status == "rejected"):
        raise PermissionDenied(f"{filer.id} is suspended: {filer.status_reason}")
    if record.status == "abandoned":
        raise FailedPrecondition(f"round {number} was abandoned; its verdicts can no longer be disputed")
    if record.finalized_at is None or update.status == "submitted":
        raise FailedPrecondition(f"round {number} has no verdict yet; disputes open after FinalizeRound")
    rules = rules_of(ctx, record)
    now = ctx.get_tx_timestamp()
    if now > record.finalized_at + rules.dispute_window_seconds:
        raise FailedPrecondition(
            f"the dispute window of round {number} closed at {record.finalized_at + rules.dispute_window_seconds}"
        )
    if update.status == "rejected" and filer.id != participant_id:
        raise PermissionDenied("only the owner of a rejected update can contest its rejection")
    if update.rule == RULE_SHARE_REFUSED:
        raise FailedPrecondition(
            f"the update of {participant_id} in round {number} was rejected because a holder organisation could not "
            f"open or check its share ({update.reason}); no vote can make it aggregatable. The refusal stands on the "
            "ledger against that organisation; submit again in the next round"
        )
    if update.status == "accepted" and filer.id == participant_id:
        raise InvalidArgument("an owner cannot contest the acceptance of its own update")
    if state.read(ctx, Dispute, keys.DISPUTE, _dispute_key(number, participant_id)) is not None:
        raise AlreadyExists(f"the update of {participant_id} in round {number} is already disputed")
    dispute = Dispute(
        round=number,
        participant=participant_id,
        filed_by=filer.id,
        kind="contest_rejection" if update.status == "rejected" else "contest_acceptance",
        reason=text,
        opened_at=now,
        voting_deadline=now + rules.dispute_voting_seconds,
    )
    state.write(ctx, keys.DISPUTE, _dispute_key(number, participant_id), dispute)
    emit(ctx, "DisputeOpened", {"dispute": dispute.id, "kind": dispute.kind, "by": filer.id})
    return dispute


@transaction("CastVote")
def cast_vote(ctx: LedgerContext, round_number: str, participant_id: str, decision: str, reason: str) -> Vote:
    auditor = require_participant(ctx, "auditor")
    number = parse_round(round_number)
    choice = parse_choice("decision", decision, ("uphold", "overturn"))
    dispute = require_dispute(ctx, number, participant_id)
    text = parse_text(
        "a vote's reason", reason, max_bytes=rules_of(ctx, require_round(ctx, number)).max_text_bytes, required=False
    )
    if dispute.status != "open":
        raise FailedPrecondition(f"dispute {dispute.id} is already {dispute.status}")
    owner_msp, filer_msp = organisation_of(participant_id), organisation_of(dispute.filed_by)
    if auditor.mspid == owner_msp:
        raise PermissionDenied(f"auditors of {owner_msp} cannot rule on an update of their own organisation")
    if auditor.mspid == filer_msp:
        raise PermissionDenied(f"{filer_msp} filed dispute {dispute.id}; the filer's organisation does not vote on it")
    now = ctx.get_tx_timestamp()
    if now > dispute.voting_deadline:
        raise FailedPrecondition(f"voting on dispute {dispute.id} closed at {dispute.voting_deadline}")
    vote_key = [keys.round_attr(number), participant_id, auditor.mspid]
    cast = state.read(ctx, Vote, keys.VOTE, vote_key)
    if cast is not None:
        raise AlreadyExists(f"{auditor.mspid} already voted on dispute {dispute.id} (through {cast.voter})")
    vote = Vote(number, participant_id, auditor.id, auditor.mspid, choice, text, now)
    state.write(ctx, keys.VOTE, vote_key, vote)
    emit(ctx, "VoteCast", {"dispute": dispute.id, "voter": auditor.id, "decision": choice})
    return vote


def _overturn(ctx: LedgerContext, record: Round, update: Update) -> None:
    rules = rules_of(ctx, record)
    now_accepted = update.status == "rejected"
    flipped = dataclasses.replace(
        update,
        status="accepted" if now_accepted else "rejected",
        reason=f"{update.reason}; verdict overturned by dispute",
    )
    delta = 1 if now_accepted else -1
    apply_verdict_to_participant(ctx, rules, update.participant, delta, -delta)
    updates = round_updates(ctx, record.number)
    updates = [flipped if u.participant == update.participant else u for u in updates]
    updates = settle_round(ctx, rules, record, updates)
    revised = dataclasses.replace(
        record,
        accepted=[u.participant for u in updates if u.status == "accepted"],
        rejected=[u.participant for u in updates if u.status == "rejected"],
        revised_after_aggregate=record.revised_after_aggregate or record.aggregate is not None,
    )
    state.write(ctx, keys.ROUND, [keys.round_attr(record.number)], revised)


@transaction("ResolveDispute")
def resolve_dispute(ctx: LedgerContext, round_number: str, participant_id: str) -> Dispute:
    require_participant(ctx)
    number = parse_round(round_number)
    dispute = require_dispute(ctx, number, participant_id)
    if dispute.status != "open":
        raise FailedPrecondition(f"dispute {dispute.id} is already {dispute.status}")
    record = require_round(ctx, number)
    rules = rules_of(ctx, record)
    votes = list(state.scan(ctx, Vote, keys.VOTE, [keys.round_attr(number), participant_id]))
    uphold = sum(v.decision == "uphold" for v in votes)
    overturn = len(votes) - uphold
    now = ctx.get_tx_timestamp()
    if len(votes) < rules.dispute_quorum:
        if now <= dispute.voting_deadline:
            raise FailedPrecondition(
                f"dispute {dispute.id} has {len(votes)} organisation vote(s); a ruling needs {rules.dispute_quorum} "
                f"(voting closes at {dispute.voting_deadline})"
            )
        status = "expired"
    else:
        status = "overturned" if overturn > uphold else "upheld"
    if status == "overturned":
        _overturn(ctx, record, require_update(ctx, number, participant_id))
    resolved = dataclasses.replace(
        dispute, status=status, votes_uphold=uphold, votes_overturn=overturn, ruled_at=now, ruling_tx=ctx.get_tx_id()
    )
    state.write(ctx, keys.DISPUTE, _dispute_key(number, participant_id), resolved)
    emit(ctx, "DisputeResolved", {"dispute": dispute.id, "status": status})
    return resolved

"""Checks shared by transactions: current rules, admin rights, registered and active callers."""

from __future__ import annotations

from fedledger.chaincode import keys, state
from fedledger.chaincode.caller import Caller, caller_of
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.errors import FailedPrecondition, PermissionDenied
from fedledger.chaincode.records import Participant, Rules


def current_rules(ctx: LedgerContext) -> Rules:
    rules = state.read(ctx, Rules, keys.RULES, ["current"])
    if rules is None:
        raise FailedPrecondition("the consortium is not initialised; an admin must call InitConsortium first")
    return rules


def registered(ctx: LedgerContext, caller: Caller) -> Participant | None:
    participant = state.read(ctx, Participant, keys.PARTICIPANT, [caller.id])
    if participant is not None and participant.cert_fingerprint != caller.fingerprint:
        raise PermissionDenied(f"the certificate of {caller.id} does not match the one it registered with")
    return participant


def require_participant(ctx: LedgerContext, *roles: str, allow_suspended: bool = False) -> Participant:
    """The calling participant: registered, of a current member organisation, active (unless
    ``allow_suspended``), and in one of ``roles`` (any role if none given)."""
    caller = caller_of(ctx.get_creator())
    participant = registered(ctx, caller)
    if participant is None:
        raise PermissionDenied(f"{caller.id} is not a registered participant; call RegisterParticipant first")
    rules = current_rules(ctx)
    if caller.mspid not in rules.member_msps:
        raise PermissionDenied(f"organisation {caller.mspid} is not a consortium member (any more)")
    if participant.status != "active" and not allow_suspended:
        raise PermissionDenied(f"{caller.id} is suspended: {participant.status_reason}")
    if roles and participant.role not in roles:
        raise PermissionDenied(
            f"{caller.id} has role {participant.role}; this transaction needs role {' or '.join(roles)}"
        )
    return participant

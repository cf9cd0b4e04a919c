"""RegisterParticipant, SuspendParticipant, ReinstateParticipant."""

from __future__ import annotations

import dataclasses

from fedledger.chaincode import keys, state
from fedledger.chaincode.caller import caller_of
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import parse_choice, parse_hash, parse_int, parse_text
from fedledger.chaincode.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied
from fedledger.chaincode.events import emit
from fedledger.chaincode.guards import current_rules, registered, require_admin
from fedledger.chaincode.records import ROLES, Participant
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.trust import trust_score


@transaction("RegisterParticipant")
def register_participant(ctx: LedgerContext, role: str, dataset_size: str, schema_hash: str) -> Participant:
    """Registers the transaction creator (MSP ID + certificate) with a role and a data attestation."""
    rules = current_rules(ctx)
    caller = caller_of(ctx.get_creator())
    role = parse_choice("role", role, ROLES)
    size = parse_int("dataset_size", dataset_size, minimum=0)
    if role == "trainer" and size < rules.min_samples_per_update:
        raise InvalidArgument(f"a trainer must attest at least {rules.min_samples_per_update} samples, got {size}")
    schema = parse_hash("schema_hash", schema_hash)
    if caller.mspid not in rules.member_msps:
        raise PermissionDenied(
            f"organisation {caller.mspid} is not a consortium member ({', '.join(rules.member_msps)})"
        )
    if registered(ctx, caller) is not None:
        raise AlreadyExists(f"{caller.id} is already registered")
    participant = Participant(
        id=caller.id,
        mspid=caller.mspid,
        common_name=caller.common_name,
        cert_fingerprint=caller.fingerprint,
        role=role,
        dataset_size=size,
        schema_hash=schema,
        status="active",
        status_reason="",
        registered_at=ctx.get_tx_timestamp(),
        trust=trust_score(rules, 0, 0),
    )
    state.write(ctx, keys.PARTICIPANT, [participant.id], participant)
    emit(ctx, "ParticipantRegistered", {"participant": participant.id, "role": role})
    return participant


def _set_status(ctx: LedgerContext, participant_id: str, status: str, reason: str) -> Participant:
    rules = current_rules(ctx)
    admin = require_admin(ctx, rules)
    text = parse_text("a reason", reason, max_bytes=rules.max_text_bytes)
    participant = state.require(ctx, Participant, keys.PARTICIPANT, [participant_id], f"participant {participant_id}")
    if participant.status == status:
        raise FailedPrecondition(f"participant {participant_id} is already {status}")
    updated = dataclasses.replace(
        participant, status=status, status_reason=f"{text} (by {admin.id})", auto_suspended=False
    )
    state.write(ctx, keys.PARTICIPANT, [participant_id], updated)
    event = "ParticipantSuspended" if status == "suspended" else "ParticipantReinstated"
    emit(ctx, event, {"participant": participant_id, "by": admin.id})
    return updated


@transaction("SuspendParticipant")
def suspend_participant(ctx: LedgerContext, participant_id: str, reason: str) -> Participant:
    return _set_status(ctx, participant_id, "suspended", reason)


@transaction("ReinstateParticipant")
def reinstate_participant(ctx: LedgerContext, participant_id: str, reason: str) -> Participant:
    return _set_status(ctx, participant_id, "active", reason)

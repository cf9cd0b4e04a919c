"""SuspendParticipant, ReinstateParticipant: an organisation's admin acts on its own members only.

Registration and roles live in governance.py; removing another organisation's member takes a quorum
(ProposeRevocation).
"""

from __future__ import annotations

import dataclasses

from fedledger.chaincode import keys, state
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import parse_text
from fedledger.chaincode.errors import FailedPrecondition, PermissionDenied
from fedledger.chaincode.events import emit
from fedledger.chaincode.guards import current_rules
from fedledger.chaincode.records import Participant
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.standing import write_participant
from fedledger.chaincode.transactions.governance import require_member_admin


def _set_status(ctx: LedgerContext, participant_id: str, status: str, reason: str) -> Participant:
    rules = current_rules(ctx)
    admin = require_member_admin(ctx, rules)
    text = parse_text("a reason", reason, max_bytes=rules.max_text_bytes)
    participant = state.require(ctx, Participant, keys.PARTICIPANT, [participant_id], f"participant {participant_id}")
    if participant.mspid != admin.mspid:
        raise PermissionDenied(
            f"{admin.id} administers {admin.mspid}, not {participant.mspid}; to remove a member of another "
            "organisation, propose it to the consortium (ProposeRevocation)"
        )
    if participant.status == "revoked":
        raise FailedPrecondition(f"participant {participant_id} was revoked: {participant.status_reason}")
    if participant.status == status:
        raise FailedPrecondition(f"participant {participant_id} is already {status}")
    updated = dataclasses.replace(
        participant, status=status, status_reason=f"{text} (by {admin.id})", auto_suspended=False
    )
    write_participant(ctx, updated)
    event = "ParticipantSuspended" if status == "suspended" else "ParticipantReinstated"
    emit(ctx, event, {"participant": participant_id, "by": admin.id})
    return updated


@transaction("SuspendParticipant")
def suspend_participant(ctx: LedgerContext, participant_id: str, reason: str) -> Participant:
    return _set_status(ctx, participant_id, "suspended", reason)


@transaction("ReinstateParticipant")
def reinstate_participant(ctx: LedgerContext, participant_id: str, reason: str) -> Participant:
    """Brings a suspended member back: the explicit, recorded act of its own organisation's admin."""
    return _set_status(ctx, participant_id, "active", reason)

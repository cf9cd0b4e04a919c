"""Participants are written here, and with them their organisation's standing: the rejections of its
members that are suspended or revoked, which a newly enrolled trainer of the organisation inherits.

One key per such member (``standing~MSPID~participant``), not a counter per organisation: enrolling reads
only its organisation's few entries, so it never conflicts with concurrent registrations or submissions.
"""

from __future__ import annotations

from fedledger.chaincode import keys, state
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import loads
from fedledger.chaincode.records import Participant


def write_participant(ctx: LedgerContext, participant: Participant) -> None:
    state.write(ctx, keys.PARTICIPANT, [participant.id], participant)
    owed = participant.rejected_count + participant.inherited_rejected if participant.status != "active" else 0
    key = keys.composite_key(keys.STANDING, [participant.mspid, participant.id])
    current = ctx.get_state(key)
    if owed and (current is None or loads(current)["rejected"] != owed):
        state.write(ctx, keys.STANDING, [participant.mspid, participant.id], {"rejected": owed})
    elif not owed and current is not None:
        ctx.del_state(key)


def inherited_rejections(ctx: LedgerContext, mspid: str) -> int:
    """Rejections of the organisation's suspended or revoked members: a new name does not wipe them."""
    return sum(loads(value)["rejected"] for _k, value in ctx.get_state_by_partial_composite_key(keys.STANDING, [mspid]))

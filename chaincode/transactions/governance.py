"""Governance: what no single organisation may decide alone.

- A trainer is enrolled by its own organisation's admin (EnrolTrainer), who attests its dataset size and
  schema; the attested size caps the samples the trainer may declare.
- The aggregator and auditor roles, the revocation of any role, a change of the rules and the early close of
  a round are proposals. The proposing admin's organisation approves by proposing; the act applies in the
  transaction that brings the approvals of ``governance_quorum`` member organisations (0: a majority). One
  approval per organisation, one key per approval, so approvals of different organisations never conflict.
  A trainer's own organisation may also revoke it alone.
- Enrolling a new trainer while members of the same organisation are suspended or revoked carries their
  rejections over to it (``inherited_rejected``): an organisation cannot whitewash a member by giving it a
  new name; its admin's enrolment is the explicit, recorded act of bringing someone in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from fedledger.chaincode import keys, state
from fedledger.chaincode.caller import Caller, caller_of, participant_id
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import loads, parse_choice, parse_hash, parse_int, parse_json, parse_text
from fedledger.chaincode.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from fedledger.chaincode.events import emit
from fedledger.chaincode.guards import current_rules
from fedledger.chaincode.records import QUORUM_ROLES, ROLES, Enrolment, Grant, Participant, Proposal, Round, Rules
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.rules import apply_patch
from fedledger.chaincode.standing import inherited_rejections, write_participant
from fedledger.chaincode.transactions.rounds import close_round_now
from fedledger.chaincode.trust import trust_score
from fedledger.chaincode.weights import organisation_of


def require_member_admin(ctx: LedgerContext, rules: Rules) -> Caller:
    """The caller: an admin (OU=admin) of a current member organisation."""
    caller = caller_of(ctx.get_creator())
    if not caller.is_admin or caller.mspid not in rules.member_msps:
        raise PermissionDenied(
            f"{caller.id} is not the admin of a member organisation (needs an OU=admin certificate of "
            f"{', '.join(rules.member_msps)})"
        )
    return caller


def quorum(rules: Rules) -> int:
    """How many member organisations must approve a governance act."""
    majority = len(rules.member_msps) // 2 + 1
    return min(rules.governance_quorum, len(rules.member_msps)) if rules.governance_quorum else majority


def store_rules(ctx: LedgerContext, rules: Rules) -> None:
    state.write(ctx, keys.RULES, ["current"], rules)
    state.write(ctx, keys.RULES, [keys.version_attr(rules.version)], rules)


# -- trainers: enrolled by their own organisation --------------------------------------------------------------


@transaction("EnrolTrainer")
def enrol_trainer(ctx: LedgerContext, common_name: str, dataset_size: str, schema_hash: str) -> Enrolment:
    """The caller's organisation admin enrols ``common_name`` of its own organisation as a trainer and attests
    its dataset. Called again, it re-attests (a registered trainer's size and schema follow)."""
    rules = current_rules(ctx)
    admin = require_member_admin(ctx, rules)
    name = parse_text("the common name", common_name, max_bytes=rules.max_text_bytes)
    size = parse_int("dataset_size", dataset_size, minimum=rules.min_samples_per_update)
    schema = parse_hash("schema_hash", schema_hash)
    pid = participant_id(admin.mspid, name)
    existing = state.read(ctx, Participant, keys.PARTICIPANT, [pid])
    if existing is not None and existing.role != "trainer":
        raise FailedPrecondition(f"{pid} is registered as {existing.role}, not as a trainer")
    if existing is not None and existing.status == "revoked":
        raise FailedPrecondition(f"{pid} was revoked ({existing.status_reason}); enrol a new identity")
    previous = state.read(ctx, Enrolment, keys.ENROLMENT, [pid])
    enrolment = Enrolment(
        participant=pid,
        dataset_size=size,
        schema_hash=schema,
        enrolled_by=admin.id,
        enrolled_at=ctx.get_tx_timestamp(),
        tx_id=ctx.get_tx_id(),
        inherited_rejected=previous.inherited_rejected if previous else inherited_rejections(ctx, admin.mspid),
    )
    state.write(ctx, keys.ENROLMENT, [pid], enrolment)
    if existing is not None:
        attested = dataclasses.replace(existing, dataset_size=size, schema_hash=schema)
        write_participant(ctx, attested)
    emit(ctx, "TrainerEnrolled", {"participant": pid, "dataset_size": size, "by": admin.id})
    return enrolment


@transaction("GetEnrolment", submit=False)
def get_enrolment(ctx: LedgerContext, participant: str) -> Enrolment:
    return state.require(ctx, Enrolment, keys.ENROLMENT, [participant], f"enrolment of {participant}")


# -- proposals ---------------------------------------------------------------------------------------------------


def _slot(action: str, role: str, subject: str) -> list[str] | None:
    """The key that keeps one open proposal per act; rules changes may compete (a stale one cannot apply)."""
    return None if action == "rules" else [action, role or "-", subject]


def _open(
    ctx: LedgerContext, rules: Rules, proposer: Caller, action: str, subject: str, role: str, changes: dict[str, Any]
) -> Proposal:
    slot = _slot(action, role, subject)
    pending = ctx.get_state(keys.composite_key(keys.OPEN_PROPOSAL, slot)) if slot else None
    if slot and pending is not None:
        raise AlreadyExists(f"proposal {loads(pending)['id']} already proposes this; approve it with ApproveProposal")
    proposal = Proposal(
        id=ctx.get_tx_id(),
        action=action,
        subject=subject,
        role=role,
        changes=changes,
        proposed_by=proposer.id,
        proposed_at=ctx.get_tx_timestamp(),
        rules_version=rules.version,
    )
    if slot:
        state.write(ctx, keys.OPEN_PROPOSAL, slot, {"id": proposal.id})
    emit(ctx, "ProposalOpened", {"proposal": proposal.id, "action": action, "subject": subject, "role": role})
    return _approve(ctx, rules, proposal, proposer, opened=True)


def _approvals(ctx: LedgerContext, proposal_id: str) -> list[str]:
    return [
        loads(value)["mspid"] for _key, value in ctx.get_state_by_partial_composite_key(keys.APPROVAL, [proposal_id])
    ]


def _approve(ctx: LedgerContext, rules: Rules, proposal: Proposal, admin: Caller, *, opened: bool = False) -> Proposal:
    approvals = [] if opened else _approvals(ctx, proposal.id)
    if admin.mspid in approvals:
        raise AlreadyExists(f"{admin.mspid} already approved proposal {proposal.id}")
    state.write(ctx, keys.APPROVAL, [proposal.id, admin.mspid], {"mspid": admin.mspid, "admin": admin.id})
    approvals = sorted([*approvals, admin.mspid])
    own_trainer = proposal.action == "revoke" and proposal.role == "trainer"
    if len(approvals) >= quorum(rules) or (own_trainer and organisation_of(proposal.subject) in approvals):
        _APPLY[proposal.action](ctx, rules, proposal, approvals)
        proposal = dataclasses.replace(
            proposal,
            status="applied",
            approvals=approvals,
            applied_at=ctx.get_tx_timestamp(),
            applied_tx=ctx.get_tx_id(),
        )
        slot = _slot(proposal.action, proposal.role, proposal.subject)
        if slot:
            ctx.del_state(keys.composite_key(keys.OPEN_PROPOSAL, slot))
        emit(ctx, "ProposalApplied", {"proposal": proposal.id, "action": proposal.action, "approvals": approvals})
    else:
        proposal = dataclasses.replace(proposal, approvals=approvals)
    state.write(ctx, keys.PROPOSAL, [proposal.id], proposal)
    return proposal


@transaction("ApproveProposal")
def approve_proposal(ctx: LedgerContext, proposal_id: str) -> Proposal:
    """One approval per member organisation; the one that completes the quorum applies the act."""
    rules = current_rules(ctx)
    admin = require_member_admin(ctx, rules)
    proposal = state.require(ctx, Proposal, keys.PROPOSAL, [proposal_id], f"proposal {proposal_id}")
    if proposal.status != "open":
        raise FailedPrecondition(f"proposal {proposal_id} was already applied in transaction {proposal.applied_tx}")
    return _approve(ctx, rules, proposal, admin)


def _subject_participant(ctx: LedgerContext, rules: Rules, subject: str) -> str:
    pid = parse_text("participant_id", subject, max_bytes=rules.max_text_bytes)
    if ":" not in pid or organisation_of(pid) not in rules.member_msps:
        raise InvalidArgument(f"{pid!r} is not a participant id of a member organisation (MSPID:common name)")
    return pid


@transaction("ProposeRole")
def propose_role(ctx: LedgerContext, participant: str, role: str) -> Proposal:
    """Proposes granting ``role`` (aggregator or auditor) to ``participant`` (MSPID:common name)."""
    rules = current_rules(ctx)
    admin = require_member_admin(ctx, rules)
    pid = _subject_participant(ctx, rules, participant)
    chosen = parse_choice("role", role, QUORUM_ROLES)
    existing = state.read(ctx, Participant, keys.PARTICIPANT, [pid])
    if existing is not None and existing.role != chosen:
        raise FailedPrecondition(f"{pid} is registered as {existing.role}; one identity holds one role")
    if existing is not None and existing.status != "revoked":
        raise AlreadyExists(f"{pid} already holds role {chosen}")
    if existing is None and state.read(ctx, Grant, keys.GRANT, [pid]) is not None:
        raise AlreadyExists(f"{pid} was already granted a role; it registers with RegisterParticipant")
    return _open(ctx, rules, admin, "grant", pid, chosen, {})


@transaction("ProposeRevocation")
def propose_revocation(ctx: LedgerContext, participant: str, reason: str) -> Proposal:
    """Proposes revoking ``participant``'s role (any role; a trainer's own organisation may revoke it alone)."""
    rules = current_rules(ctx)
    admin = require_member_admin(ctx, rules)
    pid = _subject_participant(ctx, rules, participant)
    text = parse_text("a reason", reason, max_bytes=rules.max_text_bytes)
    existing = state.read(ctx, Participant, keys.PARTICIPANT, [pid])
    grant = state.read(ctx, Grant, keys.GRANT, [pid])
    enrolment = state.read(ctx, Enrolment, keys.ENROLMENT, [pid])
    if existing is not None and existing.status == "revoked":
        raise FailedPrecondition(f"{pid} is already revoked")
    role = existing.role if existing else grant.role if grant else "trainer" if enrolment else ""
    if not role:
        raise NotFound(f"{pid} holds no role, grant or enrolment to revoke")
    return _open(ctx, rules, admin, "revoke", pid, role, {"reason": text})


@transaction("ProposeRules")
def propose_rules(ctx: LedgerContext, rules_json: str) -> Proposal:
    """Proposes a partial change of the rules (checked now, applied as a new version once approved)."""
    rules = current_rules(ctx)
    admin = require_member_admin(ctx, rules)
    if admin.mspid not in rules.admin_msps:
        raise PermissionDenied(f"{admin.mspid} is not an admin organisation ({', '.join(rules.admin_msps)})")
    changes = parse_json("rules", rules_json, dict)
    _changed_rules(rules, changes, admin.mspid)  # refuse a bad patch before anyone approves it
    return _open(ctx, rules, admin, "rules", "", "", changes)


@transaction("ProposeEarlyClose")
def propose_early_close(ctx: LedgerContext, round_number: str) -> Proposal:
    """Proposes closing an open round before its deadline although not every expected member submitted."""
    rules = current_rules(ctx)
    admin = require_member_admin(ctx, rules)
    number = parse_int("round", round_number, minimum=1)
    record = state.require(ctx, Round, keys.ROUND, [keys.round_attr(number)], f"round {number}")
    if record.status != "open":
        raise FailedPrecondition(f"round {number} is {record.status}, not open")
    return _open(ctx, rules, admin, "close_round", str(number), "", {})


def _with_approvals(ctx: LedgerContext, proposal: Proposal) -> Proposal:
    """An open proposal's approvals live in their own keys; show them on it."""
    if proposal.status != "open":
        return proposal
    return dataclasses.replace(proposal, approvals=sorted(_approvals(ctx, proposal.id)))


@transaction("GetProposal", submit=False)
def get_proposal(ctx: LedgerContext, proposal_id: str) -> Proposal:
    return _with_approvals(ctx, state.require(ctx, Proposal, keys.PROPOSAL, [proposal_id], f"proposal {proposal_id}"))


@transaction("ListProposals", submit=False)
def list_proposals(ctx: LedgerContext) -> list[Proposal]:
    return [_with_approvals(ctx, p) for p in state.scan(ctx, Proposal, keys.PROPOSAL, [])]


# -- applying an approved proposal -------------------------------------------------------------------------------


def _changed_rules(rules: Rules, changes: dict[str, Any], proposer_msp: str) -> Rules:
    changed = apply_patch(rules, changes)
    if proposer_msp not in changed.admin_msps:
        raise PermissionDenied(f"{proposer_msp} cannot remove itself from admin_msps")
    return changed


def _apply_rules(ctx: LedgerContext, rules: Rules, proposal: Proposal, approvals: list[str]) -> None:
    if rules.version != proposal.rules_version:
        raise FailedPrecondition(
            f"the rules changed (version {rules.version}) since proposal {proposal.id} was made against version "
            f"{proposal.rules_version}; propose the change again"
        )
    changed = _changed_rules(rules, proposal.changes, organisation_of(proposal.proposed_by))
    changed = dataclasses.replace(
        changed, version=rules.version + 1, created_at=ctx.get_tx_timestamp(), created_by=proposal.proposed_by
    )
    store_rules(ctx, changed)
    emit(ctx, "RulesUpdated", {"version": changed.version, "changed": sorted(proposal.changes), "approvals": approvals})


def _apply_grant(ctx: LedgerContext, rules: Rules, proposal: Proposal, approvals: list[str]) -> None:
    existing = state.read(ctx, Participant, keys.PARTICIPANT, [proposal.subject])
    if existing is not None and existing.role != proposal.role:  # it registered otherwise since the proposal
        raise FailedPrecondition(f"{existing.id} registered as {existing.role} meanwhile; one identity holds one role")
    grant = Grant(proposal.subject, proposal.role, proposal.id, approvals, ctx.get_tx_timestamp())
    state.write(ctx, keys.GRANT, [proposal.subject], grant)
    if existing is not None:  # a revoked participant granted its role again
        reason = f"role {proposal.role} granted again by {', '.join(approvals)}"
        write_participant(
            ctx, dataclasses.replace(existing, status="active", status_reason=reason, approved_by=approvals)
        )


def _apply_revoke(ctx: LedgerContext, rules: Rules, proposal: Proposal, approvals: list[str]) -> None:
    pid = proposal.subject
    ctx.del_state(keys.composite_key(keys.GRANT, [pid]))
    ctx.del_state(keys.composite_key(keys.ENROLMENT, [pid]))
    existing = state.read(ctx, Participant, keys.PARTICIPANT, [pid])
    if existing is not None:
        reason = f"role {proposal.role} revoked by {', '.join(approvals)}: {proposal.changes.get('reason', '')}"
        write_participant(ctx, dataclasses.replace(existing, status="revoked", status_reason=reason))


def _apply_close(ctx: LedgerContext, rules: Rules, proposal: Proposal, approvals: list[str]) -> None:
    close_round_now(ctx, int(proposal.subject), f"closed early by {', '.join(approvals)}")


_APPLY: dict[str, Callable[[LedgerContext, Rules, Proposal, list[str]], None]] = {
    "rules": _apply_rules,
    "grant": _apply_grant,
    "revoke": _apply_revoke,
    "close_round": _apply_close,
}


# -- registering: the identity claims what was granted -----------------------------------------------------------


@transaction("RegisterParticipant")
def register_participant(ctx: LedgerContext, role: str) -> Participant:
    """Registers the transaction creator (MSP ID + certificate) in a role its organisation enrolled it for (a
    trainer) or a quorum of organisations granted it (aggregator, auditor)."""
    rules = current_rules(ctx)
    caller = caller_of(ctx.get_creator())
    chosen = parse_choice("role", role, ROLES)
    if caller.mspid not in rules.member_msps:
        raise PermissionDenied(
            f"organisation {caller.mspid} is not a consortium member ({', '.join(rules.member_msps)})"
        )
    if state.read(ctx, Participant, keys.PARTICIPANT, [caller.id]) is not None:
        raise AlreadyExists(f"{caller.id} is already registered")
    size, schema, inherited, approved = 0, "0" * 64, 0, []
    if chosen == "trainer":
        enrolment = state.read(ctx, Enrolment, keys.ENROLMENT, [caller.id])
        if enrolment is None:
            raise PermissionDenied(
                f"{caller.id} is not enrolled as a trainer; the admin of {caller.mspid} enrols it with EnrolTrainer"
            )
        size, schema, inherited = enrolment.dataset_size, enrolment.schema_hash, enrolment.inherited_rejected
        approved = [enrolment.enrolled_by]
    else:
        grant = state.read(ctx, Grant, keys.GRANT, [caller.id])
        if grant is None or grant.role != chosen:
            raise PermissionDenied(
                f"{caller.id} holds no {chosen} grant; the role needs the approval of {quorum(rules)} member "
                "organisations' admins (ProposeRole, then ApproveProposal)"
            )
        approved = grant.approved_by
    trust = trust_score(rules, 0, inherited)
    suspended = trust < rules.trust_suspend_below
    participant = Participant(
        id=caller.id,
        mspid=caller.mspid,
        common_name=caller.common_name,
        cert_fingerprint=caller.fingerprint,
        role=chosen,
        dataset_size=size,
        schema_hash=schema,
        status="suspended" if suspended else "active",
        status_reason=(
            f"inherits {inherited} rejections of suspended members of {caller.mspid}; its admin may reinstate it"
            if suspended
            else ""
        ),
        registered_at=ctx.get_tx_timestamp(),
        trust=trust,
        inherited_rejected=inherited,
        approved_by=approved,
    )
    write_participant(ctx, participant)
    emit(ctx, "ParticipantRegistered", {"participant": participant.id, "role": chosen})
    return participant

"""Secret-shared rounds: organisations' share keys, their share sketches and their share sums.

Each organisation's per-round record (``OrgShares``) is created at CloseRound under the chaincode's policy and
from then on accepts writes endorsed by that organisation's peers only (state-based endorsement,
``LedgerContext.set_key_endorsers``): SubmitShareSketches and SubmitShareSum carry the organisation's plaintext
shares as transient data, so they go to its own peers and nowhere else, and no other organisation can write
its part. The protocol itself: :mod:`fedledger.chaincode.share_protocol`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from fedledger import shares
from fedledger.chaincode import keys, share_protocol, state
from fedledger.chaincode.caller import Caller
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import parse_json, parse_text
from fedledger.chaincode.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied
from fedledger.chaincode.events import emit
from fedledger.chaincode.guards import current_rules
from fedledger.chaincode.records import OrgShares, Round, Rules, ShareKey, Update
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.share_state import org_records
from fedledger.chaincode.transactions.governance import require_member_admin
from fedledger.chaincode.transactions.lineage import require_model
from fedledger.chaincode.transactions.rounds import parse_round, require_round
from fedledger.chaincode.transactions.updates import round_updates, rules_of
from fedledger.tensors import Manifest, sha256_hex

SHARE_PREFIX = "share/"  # transient: share/<participant> = this organisation's share of that member's update
PREVIOUS_FIELD = "previous"  # transient: this organisation's sum of the previous round (the previous direction)
MAX_KEY_PEM_BYTES = 1024


def share_field(participant: str) -> str:
    return SHARE_PREFIX + participant


# -- keys --------------------------------------------------------------------------------------------------------


@transaction("RegisterShareKey")
def register_share_key(ctx: LedgerContext, public_key_pem: str) -> ShareKey:
    """An organisation admin registers (or rotates) the X25519 key members seal its shares to; rounds opened
    from then on make the organisation a share holder."""
    rules = current_rules(ctx)
    admin = require_member_admin(ctx, rules)
    pem = parse_text("the public key", public_key_pem, max_bytes=MAX_KEY_PEM_BYTES)
    try:
        key = shares.load_public_key(pem.encode())
    except shares.SharesError as exc:
        raise InvalidArgument(f"{exc}; send the organisation's X25519 public key as PEM") from None
    kid = shares.key_id(key)
    existing = state.read(ctx, ShareKey, keys.SHARE_KEY, [admin.mspid])
    if existing is not None and existing.key_id == kid:
        raise AlreadyExists(f"{admin.mspid} already registered share key {kid}")
    if existing is not None:
        _refuse_rotation_mid_round(ctx, existing)
    record = ShareKey(
        org=admin.mspid,
        public_key=pem,
        key_id=kid,
        registered_by=admin.id,
        registered_at=ctx.get_tx_timestamp(),
        tx_id=ctx.get_tx_id(),
    )
    state.write(ctx, keys.SHARE_KEY, [admin.mspid], record)
    emit(ctx, "ShareKeyRegistered", {"org": admin.mspid, "key_id": kid})
    return record


def _refuse_rotation_mid_round(ctx: LedgerContext, current: ShareKey) -> None:
    """Members of a running round sealed their shares to the key the round fixed: replacing it now would leave
    the organisation unable to open them."""
    for record in state.scan(ctx, Round, keys.ROUND, []):
        if record.status in ("aggregated", "abandoned"):
            continue
        if any(h["org"] == current.org and h["key_id"] == current.key_id for h in record.share_holders):
            raise FailedPrecondition(
                f"round {record.number} is {record.status} and holds shares sealed to {current.org}'s key "
                f"{current.key_id}; register the new key once the round is aggregated or abandoned"
            )


@transaction("ListShareKeys", submit=False)
def list_share_keys(ctx: LedgerContext) -> list[ShareKey]:
    return list(state.scan(ctx, ShareKey, keys.SHARE_KEY, []))


def _require_holder(ctx: LedgerContext, record: Round) -> tuple[Caller, OrgShares]:
    admin = require_member_admin(ctx, current_rules(ctx))
    if not record.shared:
        raise FailedPrecondition(f"round {record.number} is not secret-shared (plaintext mode); there is no share")
    part = state.read(ctx, OrgShares, keys.ORG_SHARES, [keys.round_attr(record.number), admin.mspid])
    if part is None:
        holders = ", ".join(h["org"] for h in record.share_holders)
        if record.status == "open":
            raise FailedPrecondition(f"round {record.number} is still open; its holders act once CloseRound ran")
        raise PermissionDenied(f"{admin.mspid} holds no share of round {record.number} (holders: {holders})")
    return admin, part


def _share_of(
    transient: Mapping[str, bytes], record: Round, part: OrgShares, update: Update, manifest: Manifest
) -> shares.Share:
    """This organisation's share of ``update`` from the transient data, checked against its commitment."""
    field = share_field(update.participant)
    data = transient.get(field)
    if not data:
        raise InvalidArgument(
            f"no {field!r} in the transient data: send {part.org}'s share of every update of round {record.number} "
            "(or list the ones that do not open as refused)"
        )
    try:
        shares.verify_commitment(data, update.share_commitments[part.index])
        share = shares.Share.from_bytes(data, manifest)
    except shares.SharesError as exc:
        raise InvalidArgument(
            f"the share sent for {update.participant}'s update is refused: {exc}; send the share whose SHA-256 the "
            "member committed, or list the update as refused"
        ) from None
    if (share.org, share.index, share.k, share.scale) != (
        part.org,
        part.index,
        len(record.share_holders),
        record.share_scale,
    ):
        raise InvalidArgument(
            f"the share committed for {update.participant}'s update is share {share.index}/{share.k} of "
            f"{share.org!r} at scale {share.scale}, not share {part.index}/{len(record.share_holders)} of "
            f"{part.org!r} at scale {record.share_scale}: list the update as refused"
        )
    return share


# -- sketches ----------------------------------------------------------------------------------------------------


def _parse_refused(text: str, updates: Sequence[Update], max_bytes: int) -> dict[str, str]:
    raw = parse_json("refused", text or "{}", dict)
    known = {u.participant for u in updates}
    refused: dict[str, str] = {}
    for participant, reason in raw.items():
        if participant not in known:
            raise InvalidArgument(f"{participant!r} submitted no update in this round; it cannot be refused")
        if not isinstance(reason, str):
            raise InvalidArgument(f"the reason for refusing {participant!r} must be text")
        refused[participant] = parse_text("a refusal reason", reason, max_bytes=max_bytes)
    return refused


@transaction("SubmitShareSketches")
def submit_share_sketches(ctx: LedgerContext, round_number: str, refused: str = "{}") -> OrgShares:
    """A holder organisation's admin sketches its shares of every update of a closed round under the round's
    seed (transient ``share/<participant>``; ``previous``: its sum of the previous round, when it made one).
    ``refused``: JSON {participant: reason} for the shares that did not open or check; those updates are
    rejected at FinalizeRound, with the reason and this organisation's name on the ledger."""
    record = require_round(ctx, parse_round(round_number))
    _admin, part = _require_holder(ctx, record)
    if record.status != "closed":
        raise FailedPrecondition(
            f"round {record.number} is {record.status}; share sketches are taken between CloseRound and FinalizeRound"
        )
    if part.sketched_tx:
        raise AlreadyExists(f"{part.org} already sketched its shares of round {record.number} ({part.sketched_tx})")
    rules = rules_of(ctx, record)
    updates = round_updates(ctx, record.number)
    excused = _parse_refused(refused, updates, rules.max_text_bytes)
    manifest = require_model(ctx, record.base_model).manifest
    transient = ctx.get_transient()
    sketches = {}
    for update in updates:
        if update.participant in excused:
            continue
        share = _share_of(transient, record, part, update, manifest)
        sketches[update.participant] = share_protocol.encode_ring_sketch(
            share_protocol.ring_sketch_of(share, rules.sketch_dim, record.sketch_seed)
        )
    done = dataclasses.replace(
        part,
        sketches=sketches,
        refused=excused,
        previous=_previous_sketch(ctx, record, part, rules, manifest, transient),
        sketched_tx=ctx.get_tx_id(),
    )
    state.write(ctx, keys.ORG_SHARES, [keys.round_attr(record.number), part.org], done)
    emit(ctx, "SharesSketched", {"round": record.number, "org": part.org, "refused": sorted(excused)})
    return done


def previous_part(ctx: LedgerContext, record: Round, org: str) -> OrgShares | None:
    """``org``'s summed part of the previous round, when that round was shared, aggregated and ``org`` summed."""
    if record.number <= 1:
        return None
    previous = state.read(ctx, Round, keys.ROUND, [keys.round_attr(record.number - 1)])
    if previous is None or not previous.shared or previous.status != "aggregated":
        return None
    part = state.read(ctx, OrgShares, keys.ORG_SHARES, [keys.round_attr(previous.number), org])
    return part if part is not None and part.sum_hash else None


def _previous_sketch(
    ctx: LedgerContext,
    record: Round,
    part: OrgShares,
    rules: Rules,
    manifest: Manifest,
    transient: Mapping[str, bytes],
) -> str:
    previous = previous_part(ctx, record, part.org)
    if previous is None:
        return ""
    data = transient.get(PREVIOUS_FIELD)
    if not data:
        raise InvalidArgument(
            f"no {PREVIOUS_FIELD!r} in the transient data: send {part.org}'s share sum of round {record.number - 1} "
            f"(sha256 {previous.sum_hash}), which gives the detector the previous round's direction"
        )
    if sha256_hex(data) != previous.sum_hash:
        raise InvalidArgument(
            f"the {PREVIOUS_FIELD!r} bytes are not {part.org}'s share sum of round {record.number - 1} (its hash on "
            "the ledger differs); send that sum from the store"
        )
    try:
        share = shares.Share.from_bytes(data, manifest)
    except shares.SharesError as exc:
        raise InvalidArgument(f"{part.org}'s previous share sum does not fit this round's model: {exc}") from None
    return share_protocol.encode_ring_sketch(share_protocol.ring_sketch_of(share, rules.sketch_dim, record.sketch_seed))


@transaction("GetOrgShares", submit=False)
def get_org_shares(ctx: LedgerContext, round_number: str) -> list[OrgShares]:
    return org_records(ctx, parse_round(round_number))


# -- sums --------------------------------------------------------------------------------------------------------


def accepted_in_order(ctx: LedgerContext, number: int) -> list[Update]:
    """The round's accepted updates in hash order: the order of every sum."""
    return sorted((u for u in round_updates(ctx, number) if u.status == "accepted"), key=lambda u: u.hash)


@transaction("SubmitShareSum")
def submit_share_sum(ctx: LedgerContext, round_number: str) -> OrgShares:
    """A holder organisation's admin sums ``weight x share`` over exactly the accepted updates of a finalized
    round (transient ``share/<participant>`` for each), each share checked against its commitment; the ledger
    keeps the sum's hash, and the organisation puts the sum itself where the aggregator reads it (the store).
    After a dispute changed the accepted set, the organisation sums again."""
    record = require_round(ctx, parse_round(round_number))
    _admin, part = _require_holder(ctx, record)
    if record.status != "finalized":
        raise FailedPrecondition(f"round {record.number} is {record.status}; only a finalized round is summed")
    accepted = accepted_in_order(ctx, record.number)
    if not accepted:
        raise FailedPrecondition(f"round {record.number} has no accepted update; there is nothing to sum")
    inputs = share_protocol.sum_inputs_digest([(u.hash, u.weight) for u in accepted])
    if part.sum_inputs == inputs:
        raise AlreadyExists(f"{part.org} already summed round {record.number}'s accepted updates ({part.summed_tx})")
    manifest = require_model(ctx, record.base_model).manifest
    transient = ctx.get_transient()
    total = shares.sum_shares(
        (_share_of(transient, record, part, u, manifest) for u in accepted), [u.weight for u in accepted]
    )
    done = dataclasses.replace(
        part, sum_hash=sha256_hex(total.to_bytes()), sum_inputs=inputs, summed_tx=ctx.get_tx_id()
    )
    state.write(ctx, keys.ORG_SHARES, [keys.round_attr(record.number), part.org], done)
    emit(ctx, "SharesSummed", {"round": record.number, "org": part.org, "sum": done.sum_hash})
    return done


# -- what FinalizeRound reads ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SharedEvidence:
    """The detector's view of a shared round: each update's summed-sketch features (or why it was refused) and
    the previous round's direction under this round's seed."""

    features: dict[str, dict[str, object]]
    refused: dict[str, str]
    direction: list[float]


def shared_evidence(ctx: LedgerContext, record: Round, rules: Rules, updates: Sequence[Update]) -> SharedEvidence:
    """Every holder's sketches, added up; refused until every holder sketched its shares."""
    parts = org_records(ctx, record.number)
    waiting = [p.org for p in parts if not p.sketched_tx]
    if waiting or len(parts) != len(record.share_holders):
        raise FailedPrecondition(
            f"round {record.number} waits for the share sketches of {', '.join(waiting) or 'its holders'}: each "
            f"holder organisation's admin runs SubmitShareSketches {record.number} (fedledger.trainer.ShareHolder)"
        )
    manifest = require_model(ctx, record.base_model).manifest
    refused: dict[str, str] = {}
    features: dict[str, dict[str, object]] = {}
    for update in updates:
        reasons = [f"{p.org}: {p.refused[update.participant]}" for p in parts if update.participant in p.refused]
        if reasons:
            refused[update.participant] = "; ".join(reasons)
            continue
        ring = [share_protocol.decode_ring_sketch(p.sketches[update.participant], rules.sketch_dim) for p in parts]
        features[update.participant] = share_protocol.summed_features(ring, scale=record.share_scale, manifest=manifest)
    return SharedEvidence(features, refused, _shared_direction(ctx, record, rules, parts))


def _shared_direction(ctx: LedgerContext, record: Round, rules: Rules, parts: Sequence[OrgShares]) -> list[float]:
    """The previous round's FedAvg direction, sketched under this round's seed: the sum of its holders' sums'
    sketches over its total weight. ``[]`` unless every holder of the previous round gave its part."""
    if record.number <= 1:
        return []
    previous = state.read(ctx, Round, keys.ROUND, [keys.round_attr(record.number - 1)])
    if previous is None or not previous.shared or previous.status != "aggregated":
        return []
    mine = {p.org: p for p in parts}
    holders = [h["org"] for h in previous.share_holders]
    if any(org not in mine or not mine[org].previous for org in holders):
        return []
    total_weight = sum(u.weight for u in accepted_in_order(ctx, previous.number))
    if total_weight <= 0:
        return []
    ring = [share_protocol.decode_ring_sketch(mine[org].previous, rules.sketch_dim) for org in holders]
    sketch = share_protocol.summed_sketch(ring, scale=previous.share_scale, divisor=total_weight)
    return [float(v) for v in np.asarray(sketch, dtype=np.float64)]

"""Ledger keys. Fabric's composite-key format, one key per (record, owner) so that
concurrent transactions in a block never write the same key (no hot counters)."""

from __future__ import annotations

from fedledger.chaincode.errors import InvalidArgument

_SEP = "\x00"
_MAX_UNICODE = "\U0010ffff"

CONSORTIUM = "consortium"
RULES = "rules"
PARTICIPANT = "participant"
MODEL = "model"
MODEL_HEAD = "modelhead"
ROUND = "round"
UPDATE = "update"
PARTICIPANT_UPDATE = "pupdate"
UPDATE_BYTES = "updatebytes"  # (round, update hash) -> the participant who submitted those bytes
AGGREGATE_CHUNK = "aggchunk"  # (round, chunk) -> a chunk of the round's aggregate (AggregateChunks)
ANOMALY = "anomaly"
PAYOUT = "payout"
DISPUTE = "dispute"
VOTE = "vote"
ENROLMENT = "enrolment"  # participant id -> its organisation admin's attestation (trainers)
GRANT = "grant"  # participant id -> an aggregator or auditor role approved by a quorum of organisations
PROPOSAL = "proposal"
APPROVAL = "approval"  # (proposal id, MSP ID): one key per approving organisation, no hot counter
STANDING = "standing"  # (MSP ID, participant id) -> rejections of a suspended or revoked member
OPEN_PROPOSAL = "openproposal"  # (action, role, subject) -> the id of the open proposal for it
SHARE_KEY = "sharekey"  # MSP ID -> the organisation's X25519 key for shares
ORG_SHARES = "orgshares"  # (round, MSP ID) -> its sketches and sum; endorsed by that organisation's peers only


def composite_key(object_type: str, attributes: list[str]) -> str:
    """Same bytes as Fabric's CreateCompositeKey, so range queries behave identically."""
    for part in [object_type, *attributes]:
        if _SEP in part or _MAX_UNICODE in part:
            raise InvalidArgument(f"key part {part!r} contains a reserved character")
    return _SEP + object_type + _SEP + "".join(a + _SEP for a in attributes)


def round_attr(number: int) -> str:
    """Zero-padded so that lexical key order is numeric order."""
    return f"{number:010d}"


def version_attr(version: int) -> str:
    return f"{version:010d}"

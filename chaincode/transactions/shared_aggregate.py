"""CommitAggregate: the new global model, recomputed by the endorsing peers, in either mode.

Plaintext rounds: :func:`fedledger.chaincode.transactions.aggregate.commit_plain_aggregate` (every accepted
update's bytes). Secret-shared rounds: no endorser sees an update. The aggregator sends each holder
organisation's share sum (transient ``orgsum/<org>``), which must be the bytes whose hash that organisation
recorded for exactly the accepted updates (SubmitShareSum), the base model (``base``, whole) and, for FedAdam,
the base model's optimiser state (``base_optimizer_state``) and the new one; the peers add the sums, decode the
weighted mean, take the rules' server step and record the model only if it is that result.
"""

from __future__ import annotations

from collections.abc import Mapping

from fedledger import shares
from fedledger.chaincode import share_protocol
from fedledger.chaincode.aggregation import (
    BASE_FIELD,
    M_FIELD,
    OPTIMIZER_FIELD,
    V_FIELD,
    aggregate_state,
    decode_moments,
)
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import parse_json
from fedledger.chaincode.errors import FailedPrecondition, InvalidArgument
from fedledger.chaincode.guards import require_participant
from fedledger.chaincode.payloads import decode_payload, transient_bytes
from fedledger.chaincode.records import ModelVersion, OrgShares, Round
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.share_state import org_records
from fedledger.chaincode.transactions.aggregate import (
    CommitRequest,
    RoundAggregation,
    accepted_updates,
    aggregation_of,
    commit_plain_aggregate,
    record_aggregate,
    refuse_differing,
    require_exact_updates,
    require_finalized,
    transient_model,
)
from fedledger.chaincode.transactions.lineage import require_model
from fedledger.chaincode.transactions.rounds import parse_round, require_round
from fedledger.chaincode.transactions.updates import rules_of
from fedledger.tensors import NDState, TensorFormatError, sha256_hex

ORG_SUM_PREFIX = "orgsum/"
BASE_OPTIMIZER_FIELD = "base_optimizer_state"


def org_sum_field(org: str) -> str:
    return ORG_SUM_PREFIX + org


@transaction("CommitAggregate")
def commit_aggregate(
    ctx: LedgerContext, round_number: str, update_hashes: str, metrics: str = "{}", inline_from: str = ""
) -> ModelVersion:
    """Records the new global model (transient ``model``; FedAdam: ``optimizer_state``) if it is the aggregate of
    exactly the round's accepted updates, which the endorsers recompute (see the module docstring)."""
    record = require_round(ctx, parse_round(round_number))
    if not record.shared:
        return commit_plain_aggregate(ctx, round_number, update_hashes, metrics, inline_from)
    if inline_from.strip():
        raise InvalidArgument(f"round {record.number} is secret-shared: its aggregate is one transaction, no chunks")
    return _commit_shared(ctx, record, update_hashes, metrics)


def shared_aggregation(ctx: LedgerContext, record: Round) -> tuple[RoundAggregation, list[OrgShares]]:
    """What a shared round's aggregate is made of; refused until every holder summed the accepted set."""
    require_finalized(record)
    accepted = accepted_updates(ctx, record)
    wanted = share_protocol.sum_inputs_digest([(u.hash, u.weight) for u in accepted])
    parts = org_records(ctx, record.number)
    waiting = [p.org for p in parts if p.sum_inputs != wanted]
    if waiting:
        raise FailedPrecondition(
            f"round {record.number} waits for the share sums of {', '.join(waiting)} over its accepted updates: "
            f"each holder organisation's admin runs SubmitShareSum {record.number}"
        )
    agg = aggregation_of(record, rules_of(ctx, record), require_model(ctx, record.base_model), accepted)
    return agg, parts


def _verified(transient: Mapping[str, bytes], field: str, expected_hash: str, what: str) -> bytes:
    data = transient.get(field)
    if not data:
        raise InvalidArgument(f"no {field!r} in the transient data: send {what} ({expected_hash})")
    if sha256_hex(data) != expected_hash:
        raise InvalidArgument(f"the bytes sent as {field!r} are not {what} (its hash on the ledger differs)")
    return data


def mean_delta(agg: RoundAggregation, parts: list[OrgShares], transient: Mapping[str, bytes]) -> NDState:
    """The weighted mean delta: the holders' sums, each checked against its recorded hash, added and decoded."""
    sums = []
    for part in parts:
        data = _verified(transient, org_sum_field(part.org), part.sum_hash, f"{part.org}'s share sum")
        try:
            sums.append(shares.Share.from_bytes(data, agg.base.manifest).values)
        except shares.SharesError as exc:
            raise InvalidArgument(f"{part.org}'s share sum does not fit the base model: {exc}") from None
    return share_protocol.mean_of_sums(sums, scale=agg.record.share_scale, total_weight=agg.total_weight)


def _commit_shared(ctx: LedgerContext, record: Round, update_hashes: str, metrics: str) -> ModelVersion:
    aggregator = require_participant(ctx, "aggregator")
    used = parse_json("update_hashes", update_hashes, list)
    scores = parse_json("metrics", metrics, dict)
    agg, parts = shared_aggregation(ctx, record)
    require_exact_updates(record.number, used, {u.hash for u in agg.updates})
    transient = ctx.get_transient()
    data, model_state = transient_model(ctx, agg)
    base_state = decode_payload(
        _verified(transient, BASE_FIELD, agg.base.hash, f"base model {agg.base.hash}"),
        "base model",
        expected=agg.base.manifest,
    )
    moments = None
    if agg.base_moments and agg.base.optimizer_state is not None:
        previous = _verified(
            transient, BASE_OPTIMIZER_FIELD, agg.base.optimizer_state, f"model {agg.base.hash}'s optimiser state"
        )
        moments = _moments(previous, agg)
    new, m, v = aggregate_state(base_state, [(mean_delta(agg, parts, transient), 1)], agg.optimizer, moments)
    chunk_hashes = agg.layout.chunk_hashes(model_state, agg.chunk_elements)
    refuse_differing(agg, "model", chunk_hashes, list(agg.layout.chunk_hashes(new, agg.chunk_elements)))
    optimizer_state = None
    optimizer_chunks: dict[str, list[str]] = {}
    if m is not None and v is not None:
        optimizer_state = transient_bytes(ctx, OPTIMIZER_FIELD, max_bytes=2 * agg.moments.nbytes + (1 << 20))
        sent = _moments(optimizer_state, agg)
        for moment, mine, theirs in zip((M_FIELD, V_FIELD), sent, (m, v), strict=True):
            optimizer_chunks[moment] = agg.moments.chunk_hashes(mine, agg.chunk_elements)
            refuse_differing(
                agg,
                f"optimizer state {moment!r}",
                optimizer_chunks[moment],
                list(agg.moments.chunk_hashes(theirs, agg.chunk_elements)),
            )
    request = CommitRequest(aggregator, agg, None, scores, data, model_state, optimizer_state, None)
    return record_aggregate(ctx, request, chunk_hashes, optimizer_chunks)


def _moments(data: bytes, agg: RoundAggregation) -> tuple[NDState, NDState]:
    try:
        return decode_moments(data, agg.base.manifest)
    except TensorFormatError as exc:
        raise InvalidArgument(str(exc)) from None

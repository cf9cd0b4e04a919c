"""The study's contract: fedledger's, plus the baseline commit that hashes its inputs but does not recompute.

``AggregateChunksHashOnly`` and ``CommitAggregateHashOnly`` take exactly the arguments and transient data of
AggregateChunks and CommitAggregate and run the same steps of :mod:`fedledger.chaincode.transactions.aggregate`
(caller, round and accepted-set checks, every input chunk checked against its hash on the ledger, the model's
decoding and chunk hashes, the chunk records written and deleted, the same model record) except decoding the
inputs to float64, aggregating and comparing. Served by the benchmark's own ledgers only (embedded: in the
study's process; Fabric: ``FEDLEDGER_CONTRACT`` of its own network); never deployed by fedledger.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from fedledger.chaincode import keys, state
from fedledger.chaincode.aggregation import M_FIELD, V_FIELD
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.contract import FedLedgerContract
from fedledger.chaincode.encoding import parse_int
from fedledger.chaincode.errors import FailedPrecondition, InvalidArgument
from fedledger.chaincode.guards import require_participant
from fedledger.chaincode.records import AggregateChunk, ModelVersion
from fedledger.chaincode.registry import TransactionFn, TransactionInfo
from fedledger.chaincode.transactions.aggregate import (
    RoundAggregation,
    chunk_inputs,
    chunk_key,
    commit_request,
    record_aggregate,
    require_finalized,
    round_aggregation,
)
from fedledger.chaincode.transactions.rounds import parse_round, require_round

__all__ = ["HASH_ONLY", "BaselineContract"]

#: The baseline's transaction for each of the product's.
HASH_ONLY = {"AggregateChunks": "AggregateChunksHashOnly", "CommitAggregate": "CommitAggregateHashOnly"}


def _hashed(ctx: LedgerContext, agg: RoundAggregation, first: int, count: int) -> list[AggregateChunk]:
    """Chunks ``first .. first + count - 1``: every input chunk checked against its hash, nothing computed."""
    chunks = []
    for chunk in chunk_inputs(ctx, agg, first, count):
        for _piece, _weight in chunk.updates():
            pass
        chunks.append(AggregateChunk(agg.record.number, chunk.chunk, agg.inputs, "", None, None, ctx.get_tx_id()))
    return chunks


def aggregate_chunks_hash_only(
    ctx: LedgerContext, round_number: str, first_chunk: str, count: str
) -> list[AggregateChunk]:
    require_participant(ctx, "aggregator")
    record = require_round(ctx, parse_round(round_number))
    first = parse_int("first_chunk", first_chunk, minimum=0)
    n = parse_int("count", count, minimum=1)
    require_finalized(record)
    agg = round_aggregation(ctx, record)
    if first + n > agg.chunks:
        raise InvalidArgument(f"round {record.number}'s aggregate has {agg.chunks} chunk(s)")
    results = _hashed(ctx, agg, first, n)
    for chunk in results:
        state.write(ctx, keys.AGGREGATE_CHUNK, chunk_key(record.number, chunk.chunk), chunk)
    return results


def commit_aggregate_hash_only(
    ctx: LedgerContext, round_number: str, update_hashes: str, metrics: str = "{}", inline_from: str = ""
) -> ModelVersion:
    request = commit_request(ctx, round_number, update_hashes, metrics, inline_from)
    agg = request.agg
    stored_until = agg.chunks if request.inline_from is None else request.inline_from
    for k in range(stored_until):
        if state.read(ctx, AggregateChunk, keys.AGGREGATE_CHUNK, chunk_key(agg.record.number, k)) is None:
            raise FailedPrecondition(f"chunk {k} of round {agg.record.number}'s aggregate is not aggregated yet")
    if stored_until < agg.chunks:
        _hashed(ctx, agg, stored_until, agg.chunks - stored_until)
    chunk_hashes = agg.layout.chunk_hashes(request.model_state, agg.chunk_elements)
    optimizer_chunks = {}
    if request.moments is not None:
        for moment, values in zip((M_FIELD, V_FIELD), request.moments, strict=True):
            optimizer_chunks[moment] = agg.moments.chunk_hashes(values, agg.chunk_elements)
    model = record_aggregate(ctx, request, chunk_hashes, optimizer_chunks)
    for k in range(stored_until):
        ctx.del_state(keys.composite_key(keys.AGGREGATE_CHUNK, chunk_key(agg.record.number, k)))
    return model


def _info(name: str, fn: TransactionFn) -> TransactionInfo:
    params: Sequence[inspect.Parameter] = list(inspect.signature(fn).parameters.values())[1:]
    required = sum(1 for p in params if p.default is inspect.Parameter.empty)
    return TransactionInfo(name, fn, True, tuple(p.name for p in params), required)


_BASELINE = {
    HASH_ONLY["AggregateChunks"]: _info(HASH_ONLY["AggregateChunks"], aggregate_chunks_hash_only),
    HASH_ONLY["CommitAggregate"]: _info(HASH_ONLY["CommitAggregate"], commit_aggregate_hash_only),
}


class BaselineContract(FedLedgerContract):
    """fedledger's contract and the two baseline transactions (see the module docstring)."""

    def transaction(self, function: str) -> TransactionInfo:
        return _BASELINE.get(function) or super().transaction(function)

    def submit_transactions(self) -> list[str]:
        return sorted([*super().submit_transactions(), *_BASELINE])

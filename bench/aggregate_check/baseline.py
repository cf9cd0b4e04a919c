"""The study's contract: fedledger's, plus the baseline commit that hashes its inputs but does not recompute.

``AggregateChunksHashOnly`` and ``CommitAggregateHashOnly`` take exactly the arguments and transient data of
AggregateChunks and CommitAggregate and run the same steps of :mod:`fedledger.chaincode.transactions.aggregate`
(caller, round and accepted-set checks, every input chunk checked against its hash on the ledger, the model's
decoding and chunk hashes, the chunk records written and deleted, the same model record) except decoding the
inputs to float64, aggregating and comparing. Served by the benchmark's own ledgers only (embedded: in the
study's process; Fabric: ``FEDLEDGER_CONTRACT`` of its own network); never deployed by fedledger.
"""

from __future__ import annotations

from fedledger.chaincode import keys, state
from fedledger.chaincode.aggregation import M_FIELD, V_FIELD
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.contract import FedLedgerContract
from fedledger.chaincode.errors import FailedPrecondition
from fedledger.chaincode.records import AggregateChunk, ModelVersion
from fedledger.chaincode.registry import TransactionInfo, describe
from fedledger.chaincode.transactions.aggregate import (
    RoundAggregation,
    chunk_inputs,
    chunk_key,
    commit_request,
    record_aggregate,
    store_chunks,
)

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
    return store_chunks(ctx, round_number, first_chunk, count, _hashed)


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


_BASELINE = {
    HASH_ONLY["AggregateChunks"]: describe(HASH_ONLY["AggregateChunks"], aggregate_chunks_hash_only),
    HASH_ONLY["CommitAggregate"]: describe(HASH_ONLY["CommitAggregate"], commit_aggregate_hash_only),
}


class BaselineContract(FedLedgerContract):
    """fedledger's contract and the two baseline transactions (see the module docstring)."""

    def transaction(self, function: str) -> TransactionInfo:
        return _BASELINE.get(function) or super().transaction(function)

    def submit_transactions(self) -> list[str]:
        return sorted([*super().submit_transactions(), *_BASELINE])

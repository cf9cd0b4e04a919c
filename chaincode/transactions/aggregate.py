"""AggregateChunks and CommitAggregate: the endorsing peers recompute every new global model.

The aggregator sends as transient data the bytes an aggregate is made of: the base model's, every accepted
update's and, for FedAdam, the base model's optimiser state, cut into the chunks whose hashes the ledger holds
(:mod:`fedledger.chaincode.aggregation`). Each endorser checks every chunk against its hash, aggregates it with
the arithmetic the round's rules name (``server_optimizer`` and its parameters), and:

- ``AggregateChunks(round, first_chunk, count)`` writes the hashes of the resulting chunks, one key per round
  and chunk (transactions for different chunks never conflict). For rounds whose inputs do not fit in one
  proposal.
- ``CommitAggregate(round, update_hashes, metrics, inline_from)`` aggregates chunks ``inline_from`` onwards
  itself (the same code path; ``"0"`` = the whole round in one transaction), takes the earlier ones from
  AggregateChunks, and records the model (transient ``model``, and for FedAdam ``optimizer_state``) only if
  each of its chunks is the recomputed one. The chunk records are deleted then: the block keeps them.

A chunk computed from other inputs (another base, another accepted set after a dispute, other weights) never
counts: each chunk record carries the hash of its inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from fedledger.chaincode import keys, state
from fedledger.chaincode.aggregation import (
    BASE_FIELD,
    M_FIELD,
    MODEL_FIELD,
    OPTIMIZER_FIELD,
    V_FIELD,
    Layout,
    ServerOptimizer,
    aggregate_values,
    covering,
    decode_moments,
    inputs_digest,
    update_field,
)
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import parse_int, parse_json
from fedledger.chaincode.errors import AlreadyExists, FailedPrecondition, InvalidArgument, RuleViolation
from fedledger.chaincode.events import emit
from fedledger.chaincode.guards import require_participant
from fedledger.chaincode.payloads import decode_payload, transient_bytes
from fedledger.chaincode.records import AggregateChunk, ModelVersion, Round, Rules, Update
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.transactions.lineage import require_model
from fedledger.chaincode.transactions.rounds import parse_round, require_round
from fedledger.chaincode.transactions.updates import round_updates, rules_of
from fedledger.tensors import TensorFormatError, sha256_hex


def _sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _chunk_attr(k: int) -> str:
    return f"{k:010d}"


@dataclass(frozen=True)
class _Aggregation:
    """What a finalized round's aggregate is made of, read from the ledger."""

    record: Round
    rules: Rules
    base: ModelVersion
    updates: list[Update]  # accepted, sorted by hash: the order of the arithmetic
    optimizer: ServerOptimizer
    chunk_elements: int
    layout: Layout
    moments: Layout
    inputs: str  # chaincode.aggregation.inputs_digest

    @property
    def chunks(self) -> int:
        return self.layout.chunk_count(self.chunk_elements)

    @property
    def total_weight(self) -> int:
        return sum(u.weight for u in self.updates)

    @property
    def base_moments(self) -> bool:
        """Whether the step starts from the base model's committed moments (else from zero)."""
        return self.optimizer.stateful and self.base.optimizer_state is not None


def _finalized(record: Round) -> None:
    if record.status != "finalized":
        raise FailedPrecondition(f"round {record.number} is {record.status}; only a finalized round can be aggregated")


def _aggregation(ctx: LedgerContext, record: Round) -> _Aggregation:
    accepted = sorted((u for u in round_updates(ctx, record.number) if u.status == "accepted"), key=lambda u: u.hash)
    if not accepted:
        raise FailedPrecondition(f"round {record.number} has no accepted update; abandon it with AbandonRound")
    rules = rules_of(ctx, record)
    base = require_model(ctx, record.base_model)
    size = rules.aggregate_chunk_elements
    layout = Layout(base.manifest)
    if not base.chunk_elements or len(base.chunk_hashes) != layout.chunk_count(base.chunk_elements):
        raise FailedPrecondition(
            f"base model {base.hash} has no chunk commitments (it predates recomputed aggregates); "
            "its rounds cannot be aggregated: start from a model registered by this contract"
        )
    for update in accepted:
        if update.weight <= 0 or len(update.chunk_hashes) != layout.chunk_count(size):
            raise FailedPrecondition(
                f"update {update.hash} of round {record.number} has no FedAvg weight or chunk commitments "
                "(submitted to an older contract); abandon the round with AbandonRound"
            )
    optimizer = ServerOptimizer.from_rules(rules)
    with_moments = optimizer.stateful and base.optimizer_state is not None
    if with_moments and any(
        len(base.optimizer_chunk_hashes.get(k, [])) != len(base.chunk_hashes) for k in (M_FIELD, V_FIELD)
    ):
        raise FailedPrecondition(f"base model {base.hash} has an optimiser state without chunk commitments")
    digest = inputs_digest(
        base=base.hash,
        base_chunk_elements=base.chunk_elements,
        base_optimizer_state=base.optimizer_state if with_moments else None,
        chunk_elements=size,
        optimizer=optimizer,
        updates=[(u.hash, u.weight) for u in accepted],
    )
    return _Aggregation(
        record, rules, base, accepted, optimizer, size, layout, Layout.of_moments(base.manifest), digest
    )


def _verified_range(
    transient: Mapping[str, bytes],
    field: str,
    what: str,
    layout: Layout,
    hashes: list[str],
    chunk_elements: int,
    start: int,
    stop: int,
) -> np.ndarray:
    """Elements ``[start, stop)`` of a committed state, from transient ``field``: the state's chunks (at its own
    ``chunk_elements``) that hold them, each checked against ``hashes``."""
    chunks = covering(start, stop, chunk_elements)
    first, end = chunks.start * chunk_elements, min(chunks.stop * chunk_elements, layout.elements)
    data = transient.get(field)
    if not data:
        raise InvalidArgument(
            f"no {field!r} in the transient data: send {what}'s chunks {chunks.start}..{chunks.stop - 1}"
        )
    expected = layout.nbytes_of(first, end)
    if len(data) != expected:
        raise InvalidArgument(
            f"transient {field!r} must hold {what}'s chunks {chunks.start}..{chunks.stop - 1} ({expected} bytes), "
            f"got {len(data)} bytes"
        )
    view = memoryview(data)
    offset = layout.byte_offset(first)
    for k in chunks:
        a, b = layout.chunk_range(k, chunk_elements)
        if _sha256(view[layout.byte_offset(a) - offset : layout.byte_offset(b) - offset]) != hashes[k]:
            raise InvalidArgument(
                f"the bytes sent as {field!r} are not chunk {k} of {what} (its hash on the ledger differs); "
                f"send {what}'s own bytes"
            )
    return layout.to_float64(data, first, end)[start - first : stop - first]


def _computed(ctx: LedgerContext, agg: _Aggregation, first: int, count: int) -> Iterator[AggregateChunk]:
    """Chunks ``first .. first + count - 1`` of the aggregate, from the transient inputs, each input chunk
    checked against its hash on the ledger."""
    transient = ctx.get_transient()
    start, stop = agg.layout.chunks_range(first, count, agg.chunk_elements)
    base = agg.base
    x = _verified_range(
        transient,
        BASE_FIELD,
        f"base model {base.hash}",
        agg.layout,
        base.chunk_hashes,
        base.chunk_elements,
        start,
        stop,
    )
    m_prev = v_prev = None
    if agg.base_moments:
        m_prev, v_prev = (
            _verified_range(
                transient,
                moment,
                f"the optimiser state {moment!r} of model {base.hash}",
                agg.moments,
                base.optimizer_chunk_hashes[moment],
                base.chunk_elements,
                start,
                stop,
            )
            for moment in (M_FIELD, V_FIELD)
        )
    expected = agg.layout.nbytes_of(start, stop)
    sent: dict[str, memoryview] = {}
    for update in agg.updates:
        field = update_field(update.hash)
        data = transient.get(field)
        if not data:
            raise InvalidArgument(
                f"no {field!r} in the transient data: send chunks {first}..{first + count - 1} of every accepted "
                f"update of round {agg.record.number} (missing: {update.participant}'s)"
            )
        if len(data) != expected:
            raise InvalidArgument(
                f"transient {field!r} must hold chunks {first}..{first + count - 1} of that update ({expected} bytes), "
                f"got {len(data)} bytes"
            )
        sent[update.hash] = memoryview(data)
    offset = agg.layout.byte_offset(start)
    total = agg.total_weight
    for k in range(first, first + count):
        a, b = agg.layout.chunk_range(k, agg.chunk_elements)
        lo, hi = agg.layout.byte_offset(a) - offset, agg.layout.byte_offset(b) - offset

        def deltas(k: int = k, a: int = a, b: int = b, lo: int = lo, hi: int = hi) -> Iterator[tuple[np.ndarray, int]]:
            for update in agg.updates:
                piece = sent[update.hash][lo:hi]
                if _sha256(piece) != update.chunk_hashes[k]:
                    raise InvalidArgument(
                        f"the bytes sent for update {update.hash} ({update.participant}) are not its chunk {k} "
                        "committed at SubmitUpdate; send the update's own bytes"
                    )
                yield agg.layout.to_float64(piece, a, b), update.weight

        window = slice(a - start, b - start)
        new, m, v = aggregate_values(
            x[window],
            deltas(),
            total,
            agg.optimizer,
            None if m_prev is None else m_prev[window],
            None if v_prev is None else v_prev[window],
        )
        yield AggregateChunk(
            round=agg.record.number,
            chunk=k,
            inputs=agg.inputs,
            model=_sha256(agg.layout.from_float64(new, a)),
            m=None if m is None else _sha256(agg.moments.from_float64(m, a)),
            v=None if v is None else _sha256(agg.moments.from_float64(v, a)),
            tx_id=ctx.get_tx_id(),
        )


@transaction("AggregateChunks")
def aggregate_chunks(ctx: LedgerContext, round_number: str, first_chunk: str, count: str) -> list[AggregateChunk]:
    """Aggregates chunks ``first_chunk .. first_chunk + count - 1`` of a finalized round from the transient
    ``base``, ``update/<hash>`` (every accepted update) and, for FedAdam after its first step, ``m`` and ``v``."""
    require_participant(ctx, "aggregator")
    record = require_round(ctx, parse_round(round_number))
    first = parse_int("first_chunk", first_chunk, minimum=0)
    n = parse_int("count", count, minimum=1)
    _finalized(record)
    agg = _aggregation(ctx, record)
    if first + n > agg.chunks:
        raise InvalidArgument(
            f"round {record.number}'s aggregate has {agg.chunks} chunk(s) (0..{agg.chunks - 1}); "
            f"chunks {first}..{first + n - 1} do not all exist"
        )
    results = list(_computed(ctx, agg, first, n))
    for chunk in results:
        state.write(ctx, keys.AGGREGATE_CHUNK, [keys.round_attr(record.number), _chunk_attr(chunk.chunk)], chunk)
    return results


def _expected(ctx: LedgerContext, agg: _Aggregation, inline_from: int | None) -> list[AggregateChunk]:
    """Every chunk of the aggregate: computed here from ``inline_from`` on, before that from AggregateChunks."""
    stored_until = agg.chunks if inline_from is None else inline_from
    chunks = []
    for k in range(stored_until):
        chunk = state.read(
            ctx, AggregateChunk, keys.AGGREGATE_CHUNK, [keys.round_attr(agg.record.number), _chunk_attr(k)]
        )
        if chunk is None or chunk.inputs != agg.inputs:
            why = (
                "is not aggregated yet"
                if chunk is None
                else "was aggregated from other inputs (base, updates or weights)"
            )
            raise FailedPrecondition(
                f"chunk {k} of round {agg.record.number}'s aggregate {why}: send it with AggregateChunks, "
                "or its inputs with this transaction (inline_from)"
            )
        chunks.append(chunk)
    if stored_until < agg.chunks:
        chunks.extend(_computed(ctx, agg, stored_until, agg.chunks - stored_until))
    return chunks


def _differs(agg: _Aggregation, what: str, got: list[str], expected: list[str | None]) -> None:
    for k, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
        if mine != theirs:
            start, stop = agg.layout.chunk_range(k, agg.chunk_elements)
            described = ", ".join(f"{name}={value}" for name, value in agg.optimizer.describe().items())
            raise RuleViolation(
                f"the {what} is not the aggregate of round {agg.record.number}'s accepted updates ({described}): "
                f"chunk {k} (elements {start}..{stop - 1}) differs; commit the {what} that rule computes "
                "(fedledger.chaincode.aggregation)"
            )


@transaction("CommitAggregate")
def commit_aggregate(
    ctx: LedgerContext, round_number: str, update_hashes: str, metrics: str = "{}", inline_from: str = ""
) -> ModelVersion:
    """Records the new global model (transient ``model``; FedAdam: ``optimizer_state``) if it is the aggregate of
    exactly the accepted updates: chunks from ``inline_from`` on are recomputed from this transaction's transient
    inputs (as AggregateChunks takes them), the others must have been aggregated by AggregateChunks."""
    aggregator = require_participant(ctx, "aggregator")
    record = require_round(ctx, parse_round(round_number))
    used = parse_json("update_hashes", update_hashes, list)
    scores = parse_json("metrics", metrics, dict)
    first_inline = None if inline_from.strip() == "" else parse_int("inline_from", inline_from, minimum=0)
    _finalized(record)
    accepted = {u.hash: u for u in round_updates(ctx, record.number) if u.status == "accepted"}
    if not accepted:
        raise FailedPrecondition(f"round {record.number} has no accepted update; abandon it with AbandonRound")
    if len(used) != len(set(used)) or set(used) != set(accepted):
        missing = sorted(set(accepted) - set(used))
        extra = sorted(set(used) - set(accepted))
        raise InvalidArgument(
            f"the aggregate must use exactly the {len(accepted)} accepted updates of round {record.number} "
            f"(missing: {missing}, not accepted: {extra}, duplicates: {len(used) != len(set(used))})"
        )
    agg = _aggregation(ctx, record)
    if first_inline is not None and first_inline > agg.chunks:
        raise InvalidArgument(
            f"inline_from is {first_inline}; round {record.number}'s aggregate has {agg.chunks} chunk(s)"
        )
    base = agg.base
    data = transient_bytes(ctx, MODEL_FIELD, max_bytes=agg.rules.max_update_bytes)
    model_state = decode_payload(data, "aggregate", expected=base.manifest)
    model_hash = sha256_hex(data)
    if ctx.get_state(keys.composite_key(keys.MODEL, [model_hash])) is not None:
        raise AlreadyExists(f"model {model_hash} is already on the ledger")
    moments = None
    optimizer_state = None
    if agg.optimizer.stateful:
        limit = 2 * agg.moments.nbytes + (1 << 20)
        optimizer_state = transient_bytes(ctx, OPTIMIZER_FIELD, max_bytes=limit)
        try:
            moments = decode_moments(optimizer_state, base.manifest)
        except TensorFormatError as exc:
            raise InvalidArgument(str(exc)) from None

    expected = _expected(ctx, agg, first_inline)
    chunk_hashes = agg.layout.chunk_hashes(model_state, agg.chunk_elements)
    _differs(agg, "model", chunk_hashes, [c.model for c in expected])
    optimizer_chunks: dict[str, list[str]] = {}
    if moments is not None:
        for moment, values in zip((M_FIELD, V_FIELD), moments, strict=True):
            optimizer_chunks[moment] = agg.moments.chunk_hashes(values, agg.chunk_elements)
            _differs(
                agg, f"optimizer state {moment!r}", optimizer_chunks[moment], [getattr(c, moment) for c in expected]
            )

    model = ModelVersion(
        hash=model_hash,
        version=base.version + 1,
        parent=base.hash,
        round=record.number,
        updates=[
            {
                "participant": accepted[h].participant,
                "hash": h,
                "samples": accepted[h].samples,
                "weight": accepted[h].weight,
            }
            for h in sorted(accepted, key=lambda h: accepted[h].participant)
        ],
        manifest=base.manifest,
        size=len(data),
        committed_by=aggregator.id,
        tx_id=ctx.get_tx_id(),
        timestamp=ctx.get_tx_timestamp(),
        metrics=scores,
        chunk_elements=agg.chunk_elements,
        chunk_hashes=chunk_hashes,
        server_optimizer=agg.optimizer.describe(),
        optimizer_state=None if optimizer_state is None else sha256_hex(optimizer_state),
        optimizer_chunk_hashes=optimizer_chunks,
    )
    state.write(ctx, keys.MODEL, [model.hash], model)
    state.write(ctx, keys.MODEL_HEAD, [], {"hash": model.hash, "version": model.version})
    state.write(
        ctx,
        keys.ROUND,
        [keys.round_attr(record.number)],
        dataclasses.replace(record, status="aggregated", aggregate=model.hash),
    )
    for chunk in expected:
        if chunk.tx_id != ctx.get_tx_id():  # written by AggregateChunks: scratch, the block keeps it
            ctx.del_state(
                keys.composite_key(keys.AGGREGATE_CHUNK, [keys.round_attr(record.number), _chunk_attr(chunk.chunk)])
            )
    emit(ctx, "AggregateCommitted", {"round": record.number, "model": model.hash, "version": model.version})
    return model

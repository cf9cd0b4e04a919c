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
  each of its chunks is the recomputed one. The chunk records are deleted then: the blocks keep them.

A chunk computed from other inputs (another base, another accepted set after a dispute, other weights) never
counts: each chunk record carries the hash of its inputs. The steps (:func:`round_aggregation`,
:func:`chunk_inputs`, :func:`aggregate_chunk`, :func:`commit_request`, :func:`record_aggregate`) are public so
that the benchmark can time the same commit without the recomputation (bench/aggregate_check).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

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
from fedledger.chaincode.records import AggregateChunk, ModelVersion, Participant, Round, Rules, Update
from fedledger.chaincode.registry import transaction
from fedledger.chaincode.transactions.lineage import require_model
from fedledger.chaincode.transactions.rounds import parse_round, require_round
from fedledger.chaincode.transactions.shares import accepted_in_order
from fedledger.chaincode.transactions.updates import rules_of
from fedledger.tensors import NDState, TensorFormatError, sha256_hex


def _sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_key(number: int, k: int) -> list[str]:
    """The key attributes of chunk ``k`` of round ``number``'s aggregate (``keys.AGGREGATE_CHUNK``)."""
    return [keys.round_attr(number), f"{k:010d}"]


# -- what a round's aggregate is made of --------------------------------------------------------------


@dataclass(frozen=True)
class RoundAggregation:
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


def require_finalized(record: Round) -> None:
    if record.status != "finalized":
        raise FailedPrecondition(f"round {record.number} is {record.status}; only a finalized round can be aggregated")


def round_aggregation(ctx: LedgerContext, record: Round) -> RoundAggregation:
    """The base model, accepted updates, rules and chunk size of a finalized round's aggregate."""
    accepted = accepted_updates(ctx, record)
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
    agg = aggregation_of(record, rules, base, accepted)
    if agg.base_moments and any(
        len(base.optimizer_chunk_hashes.get(k, [])) != len(base.chunk_hashes) for k in (M_FIELD, V_FIELD)
    ):
        raise FailedPrecondition(f"base model {base.hash} has an optimiser state without chunk commitments")
    return agg


def accepted_updates(ctx: LedgerContext, record: Round) -> list[Update]:
    """The round's accepted updates in hash order (the order of the arithmetic); refused when there is none."""
    accepted = accepted_in_order(ctx, record.number)
    if not accepted:
        raise FailedPrecondition(f"round {record.number} has no accepted update; abandon it with AbandonRound")
    return accepted


def aggregation_of(record: Round, rules: Rules, base: ModelVersion, accepted: list[Update]) -> RoundAggregation:
    """The :class:`RoundAggregation` of ``accepted`` (hash order) on ``base`` under ``rules``, with its inputs
    digest: what both modes' CommitAggregate check a model against."""
    optimizer = ServerOptimizer.from_rules(rules)
    with_moments = optimizer.stateful and base.optimizer_state is not None
    size = rules.aggregate_chunk_elements
    digest = inputs_digest(
        base=base.hash,
        base_chunk_elements=base.chunk_elements,
        base_optimizer_state=base.optimizer_state if with_moments else None,
        chunk_elements=size,
        optimizer=optimizer,
        updates=[(u.hash, u.weight) for u in accepted],
    )
    return RoundAggregation(
        record, rules, base, accepted, optimizer, size, Layout(base.manifest), Layout.of_moments(base.manifest), digest
    )


def require_exact_updates(number: int, used: list[str], accepted: set[str]) -> None:
    """Refuses an aggregate that claims other updates than exactly the round's accepted ones."""
    if len(used) != len(set(used)) or set(used) != accepted:
        missing = sorted(accepted - set(used))
        extra = sorted(set(used) - accepted)
        raise InvalidArgument(
            f"the aggregate must use exactly the {len(accepted)} accepted updates of round {number} "
            f"(missing: {missing}, not accepted: {extra}, duplicates: {len(used) != len(set(used))})"
        )


def transient_model(ctx: LedgerContext, agg: RoundAggregation) -> tuple[bytes, NDState]:
    """The new model from the transient ``model``, decoded against the base's manifest; refused if it is already
    on the ledger."""
    data = transient_bytes(ctx, MODEL_FIELD, max_bytes=agg.rules.max_update_bytes)
    model_state = decode_payload(data, "aggregate", expected=agg.base.manifest)
    if ctx.get_state(keys.composite_key(keys.MODEL, [sha256_hex(data)])) is not None:
        raise AlreadyExists(f"model {sha256_hex(data)} is already on the ledger")
    return data, model_state


# -- the transient inputs, checked against the ledger ----------------------------------------------------


def _verified_range(
    transient: Mapping[str, bytes],
    field: str,
    what: str,
    layout: Layout,
    hashes: list[str],
    chunk_elements: int,
    start: int,
    stop: int,
) -> memoryview:
    """The bytes of elements ``[start, stop)`` of a committed state, from transient ``field``: the state's chunks
    (at its own ``chunk_elements``) that hold them, each checked against ``hashes``."""
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
    return view[layout.byte_offset(start) - offset : layout.byte_offset(stop) - offset]


@dataclass(frozen=True)
class ChunkInputs:
    """The checked inputs of chunk ``chunk`` (elements ``start .. stop - 1``): the base's bytes, the base's moments
    (or None: zero), and each accepted update's bytes with its weight, in hash order, checked as they are read."""

    agg: RoundAggregation
    chunk: int
    start: int
    stop: int
    base: memoryview
    m: memoryview | None
    v: memoryview | None
    _updates: tuple[memoryview, ...]  # per update (in agg.updates order): its bytes of this chunk, unchecked

    def updates(self) -> Iterator[tuple[memoryview, int]]:
        """Each update's bytes of this chunk and its weight, in hash order, after checking them against the hash
        SubmitUpdate recorded for the chunk."""
        for update, piece in zip(self.agg.updates, self._updates, strict=True):
            if _sha256(piece) != update.chunk_hashes[self.chunk]:
                raise InvalidArgument(
                    f"the bytes sent for update {update.hash} ({update.participant}) are not its chunk {self.chunk} "
                    "committed at SubmitUpdate; send the update's own bytes"
                )
            yield piece, update.weight


def chunk_inputs(ctx: LedgerContext, agg: RoundAggregation, first: int, count: int) -> Iterator[ChunkInputs]:
    """The inputs of chunks ``first .. first + count - 1`` from the transient data: ``base``, ``update/<hash>`` for
    every accepted update and (FedAdam after its first step) ``m`` and ``v``; the base's chunks are checked here,
    each update's as :meth:`ChunkInputs.updates` reads it."""
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
    moments: list[memoryview] = []
    if agg.base_moments:
        moments = [
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
        ]
    expected = agg.layout.nbytes_of(start, stop)
    sent: list[memoryview] = []
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
        sent.append(memoryview(data))
    offset = agg.layout.byte_offset(start)
    moment_offset = agg.moments.byte_offset(start)
    for k in range(first, first + count):
        a, b = agg.layout.chunk_range(k, agg.chunk_elements)
        lo, hi = agg.layout.byte_offset(a) - offset, agg.layout.byte_offset(b) - offset
        mlo, mhi = agg.moments.byte_offset(a) - moment_offset, agg.moments.byte_offset(b) - moment_offset
        yield ChunkInputs(
            agg,
            k,
            a,
            b,
            x[lo:hi],
            moments[0][mlo:mhi] if moments else None,
            moments[1][mlo:mhi] if moments else None,
            tuple(piece[lo:hi] for piece in sent),
        )


# -- the arithmetic ---------------------------------------------------------------------------------------


def aggregate_chunk(chunk: ChunkInputs, tx_id: str) -> AggregateChunk:
    """Chunk ``chunk.chunk`` of the aggregate: the hashes of the new model's, m's and v's bytes of it."""
    agg, a, b = chunk.agg, chunk.start, chunk.stop
    new, m, v = aggregate_values(
        agg.layout.to_float64(chunk.base, a, b),
        ((agg.layout.to_float64(piece, a, b), weight) for piece, weight in chunk.updates()),
        agg.total_weight,
        agg.optimizer,
        None if chunk.m is None else agg.moments.to_float64(chunk.m, a, b),
        None if chunk.v is None else agg.moments.to_float64(chunk.v, a, b),
    )
    return AggregateChunk(
        round=agg.record.number,
        chunk=chunk.chunk,
        inputs=agg.inputs,
        model=_sha256(agg.layout.from_float64(new, a)),
        m=None if m is None else _sha256(agg.moments.from_float64(m, a)),
        v=None if v is None else _sha256(agg.moments.from_float64(v, a)),
        tx_id=tx_id,
    )


def _computed(ctx: LedgerContext, agg: RoundAggregation, first: int, count: int) -> list[AggregateChunk]:
    return [aggregate_chunk(chunk, ctx.get_tx_id()) for chunk in chunk_inputs(ctx, agg, first, count)]


@transaction("AggregateChunks")
def aggregate_chunks(ctx: LedgerContext, round_number: str, first_chunk: str, count: str) -> list[AggregateChunk]:
    """Aggregates chunks ``first_chunk .. first_chunk + count - 1`` of a finalized round from the transient
    ``base``, ``update/<hash>`` (every accepted update) and, for FedAdam after its first step, ``m`` and ``v``."""
    return store_chunks(ctx, round_number, first_chunk, count, _computed)


ChunkWork = Callable[[LedgerContext, RoundAggregation, int, int], list[AggregateChunk]]


def store_chunks(
    ctx: LedgerContext, round_number: str, first_chunk: str, count: str, work: ChunkWork
) -> list[AggregateChunk]:
    """AggregateChunks' checks, then ``work`` on the chunks and one key per resulting chunk."""
    require_participant(ctx, "aggregator")
    record = require_round(ctx, parse_round(round_number))
    first = parse_int("first_chunk", first_chunk, minimum=0)
    n = parse_int("count", count, minimum=1)
    require_finalized(record)
    agg = round_aggregation(ctx, record)
    if first + n > agg.chunks:
        raise InvalidArgument(
            f"round {record.number}'s aggregate has {agg.chunks} chunk(s) (0..{agg.chunks - 1}); "
            f"chunks {first}..{first + n - 1} do not all exist"
        )
    results = work(ctx, agg, first, n)
    for chunk in results:
        state.write(ctx, keys.AGGREGATE_CHUNK, chunk_key(record.number, chunk.chunk), chunk)
    return results


# -- CommitAggregate ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommitRequest:
    """A CommitAggregate's checked arguments and transient model (and optimiser state)."""

    aggregator: Participant
    agg: RoundAggregation
    inline_from: int | None
    metrics: dict[str, object]
    model: bytes
    model_state: NDState
    optimizer_state: bytes | None
    moments: tuple[NDState, NDState] | None


def commit_request(
    ctx: LedgerContext, round_number: str, update_hashes: str, metrics: str, inline_from: str
) -> CommitRequest:
    """Every check of CommitAggregate but the recomputation: caller, round, the exact accepted set, arguments,
    the model's (and optimiser state's) format."""
    aggregator = require_participant(ctx, "aggregator")
    record = require_round(ctx, parse_round(round_number))
    used = parse_json("update_hashes", update_hashes, list)
    scores = parse_json("metrics", metrics, dict)
    first_inline = None if inline_from.strip() == "" else parse_int("inline_from", inline_from, minimum=0)
    require_finalized(record)
    require_exact_updates(record.number, used, {u.hash for u in accepted_updates(ctx, record)})
    agg = round_aggregation(ctx, record)
    if first_inline is not None and first_inline > agg.chunks:
        raise InvalidArgument(
            f"inline_from is {first_inline}; round {record.number}'s aggregate has {agg.chunks} chunk(s)"
        )
    data, model_state = transient_model(ctx, agg)
    optimizer_state = None
    moments = None
    if agg.optimizer.stateful:
        optimizer_state = transient_bytes(ctx, OPTIMIZER_FIELD, max_bytes=2 * agg.moments.nbytes + (1 << 20))
        try:
            moments = decode_moments(optimizer_state, agg.base.manifest)
        except TensorFormatError as exc:
            raise InvalidArgument(str(exc)) from None
    return CommitRequest(aggregator, agg, first_inline, scores, data, model_state, optimizer_state, moments)


def _expected(ctx: LedgerContext, agg: RoundAggregation, inline_from: int | None) -> list[AggregateChunk]:
    """Every chunk of the aggregate: computed here from ``inline_from`` on, before that from AggregateChunks."""
    stored_until = agg.chunks if inline_from is None else inline_from
    chunks = []
    for k in range(stored_until):
        chunk = state.read(ctx, AggregateChunk, keys.AGGREGATE_CHUNK, chunk_key(agg.record.number, k))
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


def refuse_differing(agg: RoundAggregation, what: str, got: list[str], expected: list[str | None]) -> None:
    for k, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
        if mine != theirs:
            start, stop = agg.layout.chunk_range(k, agg.chunk_elements)
            described = ", ".join(f"{name}={value}" for name, value in agg.optimizer.describe().items())
            raise RuleViolation(
                f"the {what} is not the aggregate of round {agg.record.number}'s accepted updates ({described}): "
                f"chunk {k} (elements {start}..{stop - 1}) differs; commit the {what} that rule computes "
                "(fedledger.chaincode.aggregation)"
            )


def record_aggregate(
    ctx: LedgerContext, request: CommitRequest, chunk_hashes: list[str], optimizer_chunks: dict[str, list[str]]
) -> ModelVersion:
    """Writes the new model (with its chunk and optimiser-state commitments), the head and the round."""
    agg = request.agg
    record, base = agg.record, agg.base
    by_participant = sorted(agg.updates, key=lambda u: u.participant)
    model = ModelVersion(
        hash=sha256_hex(request.model),
        version=base.version + 1,
        parent=base.hash,
        round=record.number,
        updates=[
            {"participant": u.participant, "hash": u.hash, "samples": u.samples, "weight": u.weight}
            for u in by_participant
        ],
        manifest=base.manifest,
        size=len(request.model),
        committed_by=request.aggregator.id,
        tx_id=ctx.get_tx_id(),
        timestamp=ctx.get_tx_timestamp(),
        metrics=dict(request.metrics),
        chunk_elements=agg.chunk_elements,
        chunk_hashes=chunk_hashes,
        server_optimizer=agg.optimizer.describe(),
        optimizer_state=None if request.optimizer_state is None else sha256_hex(request.optimizer_state),
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
    emit(ctx, "AggregateCommitted", {"round": record.number, "model": model.hash, "version": model.version})
    return model


def commit_plain_aggregate(
    ctx: LedgerContext, round_number: str, update_hashes: str, metrics: str = "{}", inline_from: str = ""
) -> ModelVersion:
    """Records the new global model (transient ``model``; FedAdam: ``optimizer_state``) if it is the aggregate of
    exactly the accepted updates: chunks from ``inline_from`` on are recomputed from this transaction's transient
    inputs (as AggregateChunks takes them), the others must have been aggregated by AggregateChunks."""
    request = commit_request(ctx, round_number, update_hashes, metrics, inline_from)
    agg = request.agg
    expected = _expected(ctx, agg, request.inline_from)
    chunk_hashes = agg.layout.chunk_hashes(request.model_state, agg.chunk_elements)
    refuse_differing(agg, "model", chunk_hashes, [c.model for c in expected])
    optimizer_chunks: dict[str, list[str]] = {}
    if request.moments is not None:
        for moment, values in zip((M_FIELD, V_FIELD), request.moments, strict=True):
            optimizer_chunks[moment] = agg.moments.chunk_hashes(values, agg.chunk_elements)
            refuse_differing(
                agg, f"optimizer state {moment!r}", optimizer_chunks[moment], [getattr(c, moment) for c in expected]
            )
    model = record_aggregate(ctx, request, chunk_hashes, optimizer_chunks)
    for chunk in expected:
        if chunk.tx_id != ctx.get_tx_id():  # written by AggregateChunks: scratch, the blocks keep it
            ctx.del_state(keys.composite_key(keys.AGGREGATE_CHUNK, chunk_key(agg.record.number, chunk.chunk)))
    return model

"""The inputs of a round's aggregate as the contract takes them, cut to fit in proposals.

The endorsing peers recompute every aggregate (:mod:`fedledger.chaincode.transactions.aggregate`): they need the
base model's, every accepted update's and, for FedAdam, the base model's optimiser state bytes, as transient
data, chunk by chunk (:mod:`fedledger.chaincode.aggregation`). :class:`AggregateInputs` holds those bytes and
gives the transient fields of any run of chunks; :meth:`AggregateInputs.plan` splits a round into
AggregateChunks transactions and the final CommitAggregate so that no proposal carries more than a byte budget
(gRPC refuses messages over ~100 MB; a proposal goes to every endorser). A round that fits is one
CommitAggregate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from fedledger.chaincode.aggregation import (
    BASE_FIELD,
    M_FIELD,
    V_FIELD,
    Layout,
    ServerOptimizer,
    covering,
    decode_moments,
    update_field,
)
from fedledger.chaincode.records import ModelVersion, Round, Rules
from fedledger.tensors import decode

__all__ = ["DEFAULT_MAX_PROPOSAL_BYTES", "AggregateInputs", "AggregatePlan"]

#: Transient bytes per proposal that :meth:`FedLedgerClient.commit_aggregate` aims to stay under.
DEFAULT_MAX_PROPOSAL_BYTES = 32 * 1024 * 1024


class _Ledger(Protocol):
    def round(self, number: int) -> Round: ...

    def rules(self, version: int | None = None) -> Rules: ...

    def model(self, model_hash: str) -> ModelVersion: ...


@dataclass(frozen=True)
class AggregatePlan:
    """AggregateChunks ``(first, count)`` batches, then CommitAggregate computing chunks ``inline_from`` onwards."""

    chunks: int
    batches: list[tuple[int, int]]
    inline_from: int

    @property
    def transactions(self) -> int:
        return len(self.batches) + 1


class AggregateInputs:
    """The bytes a round's aggregate is made of, by chunk (see the module docstring).

    ``updates`` maps each update hash to its bytes; ``base_moments`` is the base model's optimiser state file
    (FedAdam after its first step), None otherwise. The bytes are decoded against the base model's manifest
    but not hashed here: the endorsers check every chunk against the ledger.
    """

    def __init__(
        self,
        *,
        base_model: ModelVersion,
        rules: Rules,
        base: bytes,
        updates: Mapping[str, bytes],
        base_moments: bytes | None = None,
    ) -> None:
        self.base_model = base_model
        self.optimizer = ServerOptimizer.from_rules(rules)
        self.chunk_elements = rules.aggregate_chunk_elements
        self.base_chunk_elements = base_model.chunk_elements or rules.aggregate_chunk_elements
        manifest = base_model.manifest
        self.layout = Layout(manifest)
        self.moments = Layout.of_moments(manifest)
        self.chunks = self.layout.chunk_count(self.chunk_elements)
        self._base = self.layout.flat_bytes(decode(base, expected=manifest, what="base model", require_finite=False))
        self._updates = {
            h: self.layout.flat_bytes(decode(data, expected=manifest, what=f"update {h}", require_finite=False))
            for h, data in sorted(updates.items())
        }
        self._moments: tuple[bytes, bytes] | None = None
        if self.optimizer.stateful and base_model.optimizer_state is not None:
            if base_moments is None:
                raise ValueError(
                    f"the base model {base_model.hash} has an optimiser state ({base_model.optimizer_state}); "
                    "pass its bytes as base_optimizer_state"
                )
            m, v = decode_moments(base_moments, manifest)
            self._moments = (self.moments.flat_bytes(m), self.moments.flat_bytes(v))

    @classmethod
    def for_round(
        cls,
        ledger: _Ledger,
        number: int,
        *,
        base: bytes,
        updates: Mapping[str, bytes],
        base_moments: bytes | None = None,
    ) -> AggregateInputs:
        """The inputs of round ``number``, its base model and rules read from the ledger."""
        record = ledger.round(number)
        return cls(
            base_model=ledger.model(record.base_model),
            rules=ledger.rules(record.rules_version),
            base=base,
            updates=updates,
            base_moments=base_moments,
        )

    # -- what goes into a proposal ----------------------------------------------------------------
    def _elements(self, first: int, count: int) -> tuple[int, int]:
        return self.layout.chunks_range(first, count, self.chunk_elements)

    def _covering(self, start: int, stop: int) -> tuple[int, int]:
        """Elements of the base model's chunks (at its own chunk size) that hold ``[start, stop)``."""
        chunks = covering(start, stop, self.base_chunk_elements)
        return chunks.start * self.base_chunk_elements, min(
            chunks.stop * self.base_chunk_elements, self.layout.elements
        )

    def size(self, first: int, count: int) -> int:
        """Transient bytes of chunks ``first .. first + count - 1``."""
        start, stop = self._elements(first, count)
        a, b = self._covering(start, stop)
        total = len(self._updates) * self.layout.nbytes_of(start, stop) + self.layout.nbytes_of(a, b)
        if self._moments is not None:
            total += 2 * self.moments.nbytes_of(a, b)
        return total

    def transient(self, first: int, count: int) -> dict[str, bytes]:
        """The transient fields of chunks ``first .. first + count - 1``: ``base``, ``update/<hash>`` and, with
        base moments, ``m`` and ``v``."""
        if count <= 0:
            return {}
        start, stop = self._elements(first, count)
        a, b = self._covering(start, stop)
        fields = {BASE_FIELD: bytes(self.layout.range_bytes(self._base, a, b))}
        if self._moments is not None:
            fields[M_FIELD] = bytes(self.moments.range_bytes(self._moments[0], a, b))
            fields[V_FIELD] = bytes(self.moments.range_bytes(self._moments[1], a, b))
        for h, flat in self._updates.items():
            fields[update_field(h)] = bytes(self.layout.range_bytes(flat, start, stop))
        return fields

    def plan(self, max_bytes: int, fixed: int = 0) -> AggregatePlan:
        """The fewest proposals of at most ``max_bytes`` transient bytes each: as many trailing chunks as fit beside
        the ``fixed`` bytes (model and optimiser state) inline in CommitAggregate, the others in AggregateChunks
        batches. Raises ValueError when one chunk alone is over the budget."""
        n = self.chunks
        if fixed + self.size(0, n) <= max_bytes:
            return AggregatePlan(n, [], 0)
        inline_from = n
        while inline_from > 0 and fixed + self.size(inline_from - 1, n - inline_from + 1) <= max_bytes:
            inline_from -= 1
        batches = []
        k = 0
        while k < inline_from:
            if self.size(k, 1) > max_bytes:
                raise ValueError(
                    f"one chunk of this round carries {self.size(k, 1)} bytes of inputs ({len(self._updates)} updates "
                    f"x {self.chunk_elements} elements), over the {max_bytes}-byte proposal budget: lower the rule "
                    "aggregate_chunk_elements"
                )
            count = 1
            while k + count < inline_from and self.size(k, count + 1) <= max_bytes:
                count += 1
            batches.append((k, count))
            k += count
        return AggregatePlan(n, batches, inline_from)

"""The tests' aggregator: a round's honest aggregate, computed from the payloads the tests made, and committed.

The endorsing peers recompute every aggregate at CommitAggregate, so a test that needs a committed model commits
the real one: :func:`commit_round` reads the round's base model and accepted updates (hashes, weights) from the
ledger, finds their bytes among the payloads ``tests.support.tensors_bytes`` made (``PAYLOADS``), aggregates
them with the contract's arithmetic under the round's rules and sends everything the peers need.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from fedledger.chaincode.aggregation import ServerOptimizer, aggregate_state, decode_moments, encode_moments
from fedledger.chaincode.records import ModelVersion, Rules, Update
from fedledger.sdk.client import FedLedgerClient
from fedledger.tensors import NDState, decode

from .support import PAYLOADS, tensors_bytes


def payload(digest: str) -> bytes:
    try:
        return PAYLOADS[digest]
    except KeyError:
        raise AssertionError(f"no payload {digest} among the ones the tests made with tensors_bytes") from None


@dataclass
class RoundInputs:
    """What round ``number``'s aggregate is made of, bytes included."""

    number: int
    rules: Rules
    base: ModelVersion
    accepted: list[Update]  # sorted by hash: the order of the arithmetic

    @property
    def optimizer(self) -> ServerOptimizer:
        return ServerOptimizer.from_rules(self.rules)

    @property
    def base_bytes(self) -> bytes:
        return payload(self.base.hash)

    @property
    def updates(self) -> dict[str, bytes]:
        return {u.hash: payload(u.hash) for u in self.accepted}

    @property
    def base_optimizer_state(self) -> bytes | None:
        if self.optimizer.stateful and self.base.optimizer_state is not None:
            return payload(self.base.optimizer_state)
        return None

    def aggregate(self) -> tuple[NDState, NDState | None, NDState | None]:
        """The new model and (FedAdam) moments, as chaincode.aggregation computes them."""
        manifest = self.base.manifest
        moments = None
        if (state := self.base_optimizer_state) is not None:
            moments = decode_moments(state, manifest)
        deltas = [(decode(payload(u.hash), expected=manifest), u.weight) for u in self.accepted]
        return aggregate_state(decode(self.base_bytes, expected=manifest), deltas, self.optimizer, moments)


def round_inputs(client: FedLedgerClient, number: int) -> RoundInputs:
    record = client.round(number)
    accepted = sorted((u for u in client.updates(number) if u.status == "accepted"), key=lambda u: u.hash)
    return RoundInputs(number, client.rules(record.rules_version), client.model(record.base_model), accepted)


def optimizer_bytes(m: NDState, v: NDState) -> bytes:
    data = encode_moments(m, v)
    PAYLOADS[hashlib.sha256(data).hexdigest()] = data
    return data


def honest_aggregate(client: FedLedgerClient, number: int) -> tuple[bytes, bytes | None]:
    """The bytes of round ``number``'s aggregate and (FedAdam) of its optimiser state."""
    model, m, v = round_inputs(client, number).aggregate()
    return tensors_bytes(model), None if m is None or v is None else optimizer_bytes(m, v)


def commit_round(
    aggregator: FedLedgerClient,
    number: int,
    *,
    model: bytes | None = None,
    optimizer_state: bytes | None = None,
    **options: Any,
) -> ModelVersion:
    """CommitAggregate of round ``number``: its honest aggregate unless ``model`` (and ``optimizer_state``) are
    given, with every input the peers need; ``options`` go to ``commit_aggregate`` (``update_hashes``,
    ``metrics``, ``max_proposal_bytes``...)."""
    inputs = round_inputs(aggregator, number)
    if model is None:
        model, honest_state = honest_aggregate(aggregator, number)
        optimizer_state = optimizer_state if optimizer_state is not None else honest_state
    return aggregator.commit_aggregate(
        number,
        model,
        base=inputs.base_bytes,
        updates=inputs.updates,
        optimizer_state=optimizer_state,
        base_optimizer_state=inputs.base_optimizer_state,
        **options,
    )

"""Aggregator: runs rounds over the ledger. The ledger is the source of truth for round state, so a
restarted aggregator picks up exactly where the ledger says the federation is.

One round: OpenRound → wait for UpdateSubmitted events (until the deadline or every expected
member) → FinalizeRound (the contract's detector rules on every update) → read the ACCEPTED
updates from the store, each verified against its on-chain hash → aggregate (a Strategy: FedAvg,
FedAdam) → evaluate on a held-out set → CommitAggregate with the exact accepted set and the metrics
→ record provenance for the model card.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fedledger.chaincode.errors import NotFound
from fedledger.chaincode.records import ModelVersion, Round
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.store import UpdateStore
from fedledger.tensors import decode, encode

from .strategy import FedAvg, Strategy

logger = logging.getLogger(__name__)

Evaluator = Callable[[Mapping[str, Any]], dict[str, float]]


@dataclass
class RoundOutcome:
    """What one round produced, with the ledger references a reader needs to verify it."""

    number: int
    base_model: str
    model: ModelVersion | None
    accepted: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    metrics: dict[str, float]
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> tx id, block
    seconds: dict[str, float] = field(default_factory=dict)  # aggregator step (STEPS) -> wall seconds


#: The aggregator's steps of a round, in order, as timed into ``RoundOutcome.seconds``.
STEPS = (
    "open_round",
    "wait_for_deadline",
    "finalize_round",
    "fetch_verify",
    "aggregation",
    "evaluation",
    "commit_aggregate",
)


class Aggregator:
    def __init__(
        self,
        client: FedLedgerClient,
        store: UpdateStore,
        *,
        evaluate: Evaluator | None = None,
        strategy: Strategy | None = None,
        round_seconds: float = 600.0,
    ) -> None:
        self.client = client
        self.store = store
        self.evaluate = evaluate
        self.strategy = strategy or FedAvg()
        self.round_seconds = round_seconds
        self._events: dict[str, tuple[str, int]] = {}  # update hash -> (tx id, block)
        self._opened_in: dict[int, int] = {}  # round -> block of its OpenRound
        self._seconds: dict[int, dict[str, float]] = {}  # round -> step -> seconds, until aggregate() reports them

    def _timed(self, number: int, step: str, started: float) -> None:
        steps = self._seconds.setdefault(number, {})
        steps[step] = steps.get(step, 0.0) + time.perf_counter() - started

    # -- setup --------------------------------------------------------------------------------
    def ensure_registered(self) -> None:
        if self.client.whoami()["participant"] is None:
            self.client.register("aggregator", dataset_size=0, schema_hash="0" * 64)

    def publish_genesis(self, state: Mapping[str, Any], *, name: str) -> ModelVersion:
        """Stores the initial adapter and registers it on the ledger (once; later calls return it)."""
        try:
            return self.client.latest_model()
        except NotFound:
            pass
        payload = encode(state)
        self.store.put(payload)
        return self.client.register_genesis_model(payload, name=name)

    def global_state(self) -> tuple[ModelVersion, dict[str, Any]]:
        model = self.client.latest_model()
        return model, decode(self.store.get(model.hash), expected=model.manifest)

    # -- one round ----------------------------------------------------------------------------
    def next_round_number(self) -> int:
        rounds = self.client.rounds()
        return rounds[-1].number + 1 if rounds else 1

    def open_round(self, number: int) -> Round:
        started = time.perf_counter()
        model = self.client.latest_model()
        record = self.client.open_round(number, base_model=model.hash, deadline=time.time() + self.round_seconds)
        if self.client.last_result is not None:
            self._opened_in[number] = self.client.last_result.block_number
        self._timed(number, "open_round", started)
        return record

    def wait_for_updates(self, number: int, *, expected: int, timeout: float | None = None) -> int:
        """Blocks until ``expected`` updates of round ``number`` were submitted, or the deadline passes.

        Counts the round's UpdateSubmitted events from its opening block, so submissions made before
        this call count too and nothing is polled.
        """
        started = time.perf_counter()
        deadline = self.client.round(number).deadline if timeout is None else time.time() + timeout
        submitted: set[str] = set()
        done = threading.Event()
        stream = self.client.events(start_block=self._opened_in.get(number, 1))

        def watch() -> None:
            for event in stream:
                payload = json.loads(event.payload)
                if event.name == "UpdateSubmitted" and payload["round"] == number:
                    submitted.add(payload["hash"])
                    if len(submitted) >= expected:
                        done.set()
                        return

        threading.Thread(target=watch, daemon=True).start()
        done.wait(max(0.0, deadline - time.time()))
        stream.close()
        self._timed(number, "wait_for_deadline", started)
        return len(submitted)

    def finalize(self, number: int) -> Round:
        started = time.perf_counter()
        record = self.client.round(number)
        if record.status == "open":
            self.client.close_round(number)
        finalized = self.client.finalize_round(number)
        self._timed(number, "finalize_round", started)  # CloseRound + FinalizeRound (the detector runs here)
        self._index_submissions(number)
        return finalized

    def _index_submissions(self, number: int) -> None:
        """Block and transaction of every update of the round, from the chaincode events between the round's
        opening and its RoundFinalized event (the provenance a model card cites)."""
        with self.client.events(start_block=self._opened_in.get(number, 1)) as stream:
            for event in stream:
                payload = json.loads(event.payload)
                if event.name == "UpdateSubmitted":
                    self._events[payload["hash"]] = (event.transaction_id, event.block_number)
                elif event.name == "RoundFinalized" and payload["round"] == number:
                    return

    def aggregate(self, number: int) -> RoundOutcome:
        """Aggregates the accepted updates of a finalized round and commits the new global model."""
        started = time.perf_counter()
        record = self.client.round(number)
        base = self.client.model(record.base_model)
        base_state = decode(self.store.get(base.hash), expected=base.manifest)
        updates = self.client.updates(number)
        accepted = sorted((u for u in updates if u.status == "accepted"), key=lambda u: u.hash)
        results = [(decode(self.store.get(u.hash), expected=base.manifest), u.samples) for u in accepted]
        fetched = time.perf_counter()
        state = self.strategy.aggregate_fit(number, base_state, results) if results else base_state
        aggregated = time.perf_counter()
        metrics = dict(self.evaluate(state)) if self.evaluate is not None else {}
        evaluated = time.perf_counter()
        payload = encode(state)
        self.store.put(payload)
        model = self.client.commit_aggregate(number, payload, update_hashes=[u.hash for u in accepted], metrics=metrics)
        committed = time.perf_counter()
        commit = self.client.last_result
        return RoundOutcome(
            number=number,
            base_model=base.hash,
            model=model,
            accepted=[self._describe(u) for u in accepted],
            rejected=[self._describe(u) for u in updates if u.status == "rejected"],
            metrics=metrics,
            transactions={
                "CommitAggregate": {"tx_id": commit.transaction_id, "block": commit.block_number} if commit else {}
            },
            seconds={
                **self._seconds.pop(number, {}),
                "fetch_verify": fetched - started,
                "aggregation": aggregated - fetched,
                "evaluation": evaluated - aggregated,
                "commit_aggregate": committed - evaluated,
            },
        )

    def _describe(self, update: Any) -> dict[str, Any]:
        tx_block = self._events.get(update.hash)
        return {
            "participant": update.participant,
            "hash": update.hash,
            "samples": update.samples,
            "epsilon": update.epsilon,
            "score": update.score,
            "reason": update.reason,
            "tx_id": update.tx_id,
            "block": tx_block[1] if tx_block else None,
        }

    # -- resuming -----------------------------------------------------------------------------
    def resume(self) -> tuple[str, int]:
        """What to do next according to the ledger: ("open" | "collect" | "finalize" | "aggregate", round)."""
        rounds = self.client.rounds()
        if not rounds or rounds[-1].status in ("aggregated", "abandoned"):
            return "open", self.next_round_number()
        last = rounds[-1]
        if last.status == "open":
            return ("collect" if time.time() < last.deadline else "finalize"), last.number
        if last.status == "closed":
            return "finalize", last.number
        return "aggregate", last.number

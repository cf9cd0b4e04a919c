"""TimedRounds: the scalability study's :class:`~fedledger.trainer.rounds.RoundLedger`.

The round itself is the :class:`~fedledger.trainer.rounds.RoundDriver`'s, as everywhere else; what this
ledger adds is a step limit on every contract transaction it sends (OpenRound, CloseRound, FinalizeRound,
ListUpdates, CommitAggregate), each timed into the study's result row, so that the first step to fail or run
out of time is the break point (:class:`~fedledger.bench.scalability.phases.StepFailed` ends the round).
The update bytes stay in memory (no update store: the study measures the ledger, not a disk), and
FinalizeRound's verdict is checked against the contract's own verdict function run in this process.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fedledger.anomaly.features import direction_of
from fedledger.bench.scalability.phases import timed_call
from fedledger.chaincode.encoding import dumps
from fedledger.chaincode.records import Rules
from fedledger.chaincode.verdicts import detect, screened
from fedledger.sdk.client import FedLedgerClient
from fedledger.tensors import NDState, decode, encode, sha256_hex
from fedledger.trainer.rounds import Contribution, RoundOutcome, Step
from fedledger.trainer.strategy import Strategy

__all__ = ["TimedRounds", "verdict_in_process"]


def verdict_in_process(number: int, rules: Rules, records: Sequence[Any], previous: Sequence[Any]) -> set[str]:
    """The participants FinalizeRound would reject: the contract's verdict over ``records``, with the previous
    round's accepted direction as FinalizeRound derives it."""
    accepted = [u for u in previous if u.status == "accepted"]
    direction = direction_of([u.features for u in accepted], [u.weight for u in accepted])  # FedAvg weights
    updates = [screened(r.features, samples=r.samples, epsilon=r.epsilon or 0.0) for r in records]
    verdicts = detect(number, rules, updates, direction)
    return {r.participant for r, v in zip(records, verdicts, strict=True) if not v.accepted}


class TimedRounds:
    """Rounds on ``aggregator``'s ledger, each transaction timed under ``limit`` seconds into ``row``.

    ``payloads`` maps a participant id to the bytes it submitted this round (filled by the driver's collect
    hook); ``head`` and ``state`` are the latest committed model, and ``previous`` the update records of the
    round that made it (for the previous-direction feature of the in-process verdict). ``probe``, called just
    before FinalizeRound, returns a function that gives the row what the peers spent on it (CPU, shim calls).
    """

    def __init__(
        self,
        aggregator: FedLedgerClient,
        *,
        head: str,
        state: NDState,
        limit: float,
        row: dict[str, Any],
        probe: Callable[[], Callable[[], Mapping[str, Any]]] | None = None,
    ) -> None:
        self.aggregator = aggregator
        self.model_hash = head
        self.state = state
        self.previous: list[Any] = []
        self.limit = limit
        self.row = row
        self.probe = probe
        self._records: list[Any] = []
        self.encode_seconds = 0.0
        self.payloads: dict[str, bytes] = {}

    def _timed(self, key: str, step: str, call: Callable[[], Any]) -> Any:
        result, seconds = timed_call(step, call, self.limit)
        self.row[key] = round(seconds, 3)
        return result

    # -- the RoundLedger protocol --------------------------------------------------------------
    def head(self) -> str:
        return self.model_hash

    def digest(self, state: NDState) -> str:
        return sha256_hex(encode(state))

    def next_step(self) -> tuple[Step, int]:
        return "open", max((r.number for r in self.aggregator.rounds()), default=0) + 1

    def open(self, number: int) -> None:
        deadline = time.time() + 7200
        self._timed(
            "open_round_s",
            "OpenRound",
            lambda: self.aggregator.open_round(number, base_model=self.model_hash, deadline=deadline),
        )
        self.payloads.clear()

    def screen(self, number: int) -> None:
        """CloseRound, FinalizeRound (with the peers' CPU and shim calls when observed), then ListUpdates and the
        same verdict computed in this process."""
        self._timed("close_round_s", "CloseRound", lambda: self.aggregator.close_round(number))
        spent = self.probe() if self.probe else None
        finalized = self._timed("finalize_s", "FinalizeRound", lambda: self.aggregator.finalize_round(number))
        if spent is not None:
            self.row.update(spent())
        rejected = set(finalized.rejected)
        self.row["accepted"], self.row["rejected"] = len(finalized.accepted), len(rejected)
        records = self._timed("list_updates_s", "ListUpdates", lambda: self.aggregator.updates(number))
        self.row["update_record_bytes"] = round(statistics.median(len(dumps(r)) for r in records))
        started = time.perf_counter()
        here = verdict_in_process(number, self.aggregator.rules(), records, self.previous)
        self.row["detector_in_process_s"] = round(time.perf_counter() - started, 3)
        self.row["verdicts_match"] = here == rejected
        self._records = records

    def base_state(self, number: int) -> NDState:
        return self.state

    def contributions(self, number: int) -> list[Contribution]:
        accepted = sorted((r for r in self._records if r.status == "accepted"), key=lambda r: r.hash)
        return [Contribution(r.hash, r.participant, r.weight, decode(self.payloads[r.participant])) for r in accepted]

    def commit(
        self,
        number: int,
        state: NDState,
        used: Sequence[Contribution],
        metrics: Mapping[str, float],
        *,
        strategy: Strategy,
    ) -> RoundOutcome:
        """CommitAggregate (with AggregateChunks first when the inputs do not fit in one proposal); the study runs
        FedAvg, which keeps no server state."""
        started = time.perf_counter()
        payload = encode(state)
        base = encode(self.state)
        self.encode_seconds = time.perf_counter() - started
        by_hash = {r.hash: self.payloads[r.participant] for r in self._records}
        committed = self._timed(
            "commit_aggregate_s",
            "CommitAggregate",
            lambda: self.aggregator.commit_aggregate(
                number,
                payload,
                base=base,
                updates={c.hash: by_hash[c.hash] for c in used},
                metrics={"bench": "scalability"},
            ),
        )
        self.model_hash, self.state, self.previous = committed.hash, state, self._records
        return RoundOutcome(number, committed.parent or "", committed, [], [], dict(metrics))

"""The round driver: every federation fedledger runs goes through :class:`RoundDriver`.

One round is open → collect → screen → aggregate → evaluate → commit → record. The driver owns that order,
the timing of each step and the strategy's state; where the round's state lives is a :class:`RoundLedger`:

- :class:`fedledger.trainer.aggregator.Aggregator`: the contract, on either ledger, through the SDK; screening
  is the contract's FinalizeRound;
- :class:`fedledger.experiments.simulation.InMemoryRounds`: memory, for experiments; it screens with the
  contract's own verdict function and the rules' configuration.

Hooks say what differs between runs: ``collect`` (how to wait for the round's updates: train the local
members, wait for events, or both), the ledger's screening, the ``strategy`` (how to aggregate), ``evaluate``
and ``record`` (what to do with each outcome). A strategy with server state (FedAdam) is checkpointed after
every commit and restored from the checkpoint when the driver starts, so a restarted aggregator continues
with the same state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from fedledger.tensors import NDState
from fedledger.trainer.strategy import FedAvg, Strategy, load_strategy_state, save_strategy_state

__all__ = [
    "STEPS",
    "Contribution",
    "RoundDriver",
    "RoundLedger",
    "RoundOutcome",
    "Step",
]

logger = logging.getLogger(__name__)

Step = Literal["open", "collect", "finalize", "aggregate"]
Evaluator = Callable[[Mapping[str, Any]], dict[str, float]]

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


@dataclass(frozen=True)
class Contribution:
    """An accepted update, read back and verified against its recorded hash, ready to aggregate."""

    hash: str
    participant: str
    weight: int  # its FedAvg weight: the ledger's capped weight units (simulations: its samples)
    delta: NDState


@dataclass
class RoundOutcome:
    """What one round produced, with the ledger references a reader needs to verify it.

    ``model`` is the committed model version (a ``ModelVersion`` on a ledger, ``None`` when the round was
    abandoned or runs in memory); ``accepted`` and ``rejected`` describe each update (participant, hash,
    samples, ε, score, reason, tx id, block).
    """

    number: int
    base_model: str
    model: Any
    accepted: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    metrics: dict[str, float]
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> tx id, block
    seconds: dict[str, float] = field(default_factory=dict)  # STEPS -> wall seconds
    started_at: Step = "open"  # where the driver took the round up: "open" unless it resumed one


class RoundLedger(Protocol):
    """Where a round's state lives, and how updates are screened."""

    def next_step(self) -> tuple[Step, int]:
        """What to do next and for which round, according to the recorded state (resumes after a restart)."""
        ...

    def open(self, number: int) -> None: ...

    def screen(self, number: int) -> None:
        """Close the round and rule on every update (accepted or rejected)."""
        ...

    def base_state(self, number: int) -> NDState:
        """The global state the round's members started from, verified against its recorded hash."""
        ...

    def contributions(self, number: int) -> list[Contribution]:
        """The round's accepted updates, verified against their recorded hashes, in canonical (hash) order."""
        ...

    def commit(
        self,
        number: int,
        state: NDState,
        used: Sequence[Contribution],
        metrics: Mapping[str, float],
        *,
        strategy: Strategy,
    ) -> RoundOutcome:
        """Record the new global state ``strategy`` built from exactly ``used`` (or abandon the round when it is
        empty). A ledger that recomputes the aggregate (the contract) also records the strategy's server state
        (FedAdam's moments) and refuses a strategy its rules do not name."""
        ...

    def head(self) -> str:
        """Hash of the latest global model: what a strategy checkpoint must match to be restored."""
        ...

    def digest(self, state: NDState) -> str:
        """The hash under which ``state`` would be committed."""
        ...


Collect = Callable[[int], None]


class RoundDriver:
    """Runs rounds over a :class:`RoundLedger` (see the module docstring).

    Parameters
    ----------
    ledger:
        Where the rounds live.
    collect:
        Called with the round number while the round is open; returns once the round's updates are in (or
        the wait is over). Members training in this process submit here.
    strategy:
        How accepted updates become the next global state (default FedAvg).
    evaluate:
        Metrics of a global state (recorded with the commit).
    record:
        Called with every outcome after its commit.
    checkpoint:
        File that keeps the strategy's server state between runs; restored when it matches the ledger's
        latest model. ``None`` keeps it in memory only.
    """

    def __init__(
        self,
        ledger: RoundLedger,
        *,
        collect: Collect,
        strategy: Strategy | None = None,
        evaluate: Evaluator | None = None,
        record: Callable[[RoundOutcome], None] | None = None,
        checkpoint: Path | str | None = None,
    ) -> None:
        self.ledger = ledger
        self.collect = collect
        self.strategy = strategy or FedAvg()
        self.evaluate = evaluate
        self.record = record
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.restored = self.checkpoint is not None and load_strategy_state(
            self.strategy, self.checkpoint, model_hash=self.ledger.head()
        )

    def run(self, rounds: int) -> list[RoundOutcome]:
        """``rounds`` more rounds, each resumed from wherever the ledger says the federation is."""
        return [self.run_round() for _ in range(rounds)]

    def run_round(self) -> RoundOutcome:
        seconds: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(step: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            seconds[step] = seconds.get(step, 0.0) + now - clock
            clock = now

        step, number = self.ledger.next_step()
        logger.info("round %d: resuming at %s", number, step)
        if step == "open":
            self.ledger.open(number)
            lap("open_round")
        if step in ("open", "collect"):
            self.collect(number)
            lap("wait_for_deadline")
        if step != "aggregate":
            self.ledger.screen(number)
            lap("finalize_round")
        base = self.ledger.base_state(number)
        used = self.ledger.contributions(number)
        lap("fetch_verify")
        state = self.strategy.aggregate_fit(number, base, [(c.delta, c.weight) for c in used]) if used else base
        lap("aggregation")
        metrics = dict(self.evaluate(state)) if self.evaluate is not None else {}
        lap("evaluation")
        if self.checkpoint is not None and used:
            save_strategy_state(self.strategy, self.checkpoint, model_hash=self.ledger.digest(state))
        outcome = self.ledger.commit(number, state, used, metrics, strategy=self.strategy)
        lap("commit_aggregate")
        outcome.seconds = {**seconds, **outcome.seconds}
        outcome.started_at = step
        if self.record is not None:
            self.record(outcome)
        return outcome

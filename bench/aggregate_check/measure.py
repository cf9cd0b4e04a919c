"""The measurements of the aggregate-check study: rounds of n one-megabyte updates, each ended by one timed
commit, checked (the peers recompute) or hash-only (the baseline), on one ledger; and the arithmetic in process.

The round is driven step by step here (not by the RoundDriver) because the study times one transaction kind in
two variants on identical rounds; everything else about a round is the product's (SDK client, contract).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedledger.bench.aggregate_check.baseline import HASH_ONLY, BaselineContract
from fedledger.bench.ledgers import PRIVACY, SAMPLES, SCHEMA, LedgerUnderTest, until_discovered
from fedledger.chaincode import errors as contract_errors
from fedledger.chaincode.aggregation import MODEL_FIELD, ServerOptimizer, aggregate_state
from fedledger.chaincode.records import Rules
from fedledger.sdk.aggregate import AggregateInputs
from fedledger.sdk.client import FedLedgerClient, grant_role
from fedledger.sdk.embedded import shared_ledger
from fedledger.tensors import Manifest, NDState, decode, encode, manifest

logger = logging.getLogger("bench.aggregate_check")

MODES = ("checked", "hash-only")
#: float32 elements in one MiB.
MIB_ELEMENTS = 262_144
RANK = 16
#: No detection in these rounds (every update is accepted, as the study's n says).
RULES = {"detector_min_updates": 1_000_000}

RUN_KEYS = ("ledger", "n", "mode", "run", "seconds", "transactions", "transient_mb")


def lora_shapes(mib: float) -> dict[str, tuple[int, int]]:
    """Two rank-16 LoRA pairs of ``mib`` MiB of float32 in all (1 MiB: 4 x 16 x 4096)."""
    width = max(1, int(mib * MIB_ELEMENTS) // (4 * RANK))
    return {
        f"layers.{layer}.q_proj.lora_{part}": (RANK, width) if part == "A" else (width, RANK)
        for layer in (0, 1)
        for part in ("A", "B")
    }


def make_updates(shapes: dict[str, tuple[int, int]], count: int, rng: np.random.Generator) -> list[bytes]:
    return [
        encode({k: (0.01 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}) for _ in range(count)
    ]


@dataclass
class CommitRun:
    ledger: str
    n: int
    mode: str
    run: int
    seconds: float
    transactions: int
    transient_mb: float

    def row(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "n": self.n,
            "mode": self.mode,
            "run": self.run,
            "seconds": round(self.seconds, 4),
            "transactions": self.transactions,
            "transient_mb": round(self.transient_mb, 2),
        }


def median_rows(runs: Sequence[CommitRun]) -> list[dict[str, Any]]:
    """Per (ledger, n, mode): the median, min and max seconds over the runs, the proposals per commit and MB sent."""
    cells: dict[tuple[str, int, str], list[CommitRun]] = {}
    for r in runs:
        cells.setdefault((r.ledger, r.n, r.mode), []).append(r)
    return [
        {
            "ledger": ledger,
            "n": n,
            "mode": mode,
            "runs": len(group),
            "median_s": round(statistics.median(r.seconds for r in group), 4),
            "min_s": round(min(r.seconds for r in group), 4),
            "max_s": round(max(r.seconds for r in group), 4),
            "transactions": group[0].transactions,
            "transient_mb": group[0].transient_mb,
        }
        for (ledger, n, mode), group in cells.items()
    ]


class CheckBench:
    """One ledger serving :class:`BaselineContract`: an aggregator, a 1 MB genesis model and trainers enrolled as
    the rounds need them (a round expects every active trainer, so the counts are run in ascending order)."""

    def __init__(
        self, ledger: LedgerUnderTest, shapes: dict[str, tuple[int, int]], *, budget: int, workers: int = 10
    ) -> None:
        self.ledger = ledger
        self.name = ledger.name
        self.budget = budget
        self.workers = workers
        self.tag = f"{int(time.time()):x}"
        if not ledger.is_fabric:  # the embedded ledger runs its contract in this process: serve the study's
            shared_ledger(ledger.location.path / "ledger").contract = BaselineContract()
        # On Fabric every client waits until each org's peer has its block: the next transaction is endorsed by
        # both (an enrolment before the registration, the submissions before FinalizeRound, the chunk records
        # before CommitAggregate).
        self.options: dict[str, Any] = {"committed_on": ledger.member_msps} if ledger.is_fabric else {}
        self.admins = {m: ledger.client(m, "Admin", admin=True, **self.options) for m in ledger.member_msps}
        first = ledger.orgs[0]
        admin = self.admins[first]
        until_discovered(lambda: admin.init_consortium({"member_msps": ledger.member_msps, **RULES}))
        self.aggregator = ledger.client(first, f"bench-aggregator-{self.tag}", **self.options)
        grant_role(list(self.admins.values()), self.aggregator.whoami()["id"], "aggregator")
        self.aggregator.register("aggregator")
        self.rules: Rules = self.aggregator.rules()
        zero = encode({k: np.zeros(s, np.float32) for k, s in shapes.items()})
        self.models: dict[str, bytes] = {}  # model hash -> bytes (the aggregator's store)
        self.models[self.aggregator.register_genesis_model(zero, name="bench-aggregate-check").hash] = zero
        self.manifest: Manifest = manifest(decode(zero))
        self.trainers: list[FedLedgerClient] = []
        self.payloads: dict[str, bytes] = {}  # participant id -> the bytes it submits in every round

    def ensure_trainers(self, n: int, updates: Sequence[bytes]) -> None:
        """Enrols and registers trainers until there are ``n``; trainer i always submits ``updates[i]``."""
        orgs = self.ledger.orgs
        new = [
            self.ledger.client(orgs[i % len(orgs)], f"bench-trainer{i}-{self.tag}", **self.options)
            for i in range(len(self.trainers), n)
        ]

        def join(client: FedLedgerClient) -> None:
            mspid, _, name = client.whoami()["id"].partition(":")
            self.admins[mspid].enrol_trainer(name, dataset_size=1000, schema_hash=SCHEMA)
            with contextlib.suppress(contract_errors.AlreadyExists):
                client.register("trainer")

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(join, new))
        for i, client in enumerate(new, start=len(self.trainers)):
            self.payloads[client.whoami()["id"]] = updates[i]
        self.trainers += new

    def play_round(self, n: int) -> int:
        """A fresh round on the latest model: ``n`` trainers submit (``workers`` at a time), close, finalize."""
        number = max((r.number for r in self.aggregator.rounds()), default=0) + 1
        base = self.aggregator.latest_model().hash
        self.aggregator.open_round(number, base_model=base, deadline=time.time() + 3600)
        trainers = self.trainers[:n]

        def submit(client: FedLedgerClient) -> None:
            payload = self.payloads[client.whoami()["id"]]
            client.submit_update(number, payload, samples=SAMPLES, privacy=PRIVACY, train_loss=0.5)

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(submit, trainers))
        self.aggregator.close_round(number)
        finalized = self.aggregator.finalize_round(number)
        if len(finalized.accepted) != n:
            raise RuntimeError(f"round {number}: {len(finalized.accepted)} of {n} updates accepted")
        return number

    def aggregate(self, number: int) -> tuple[bytes, bytes, dict[str, bytes]]:
        """The round's honest FedAvg aggregate (untimed: the aggregator's work before the commit), its base's bytes
        and the accepted updates' bytes by hash."""
        base_hash = self.aggregator.round(number).base_model
        accepted = sorted((u for u in self.aggregator.updates(number) if u.status == "accepted"), key=lambda u: u.hash)
        updates = {u.hash: self.payloads[u.participant] for u in accepted}
        base = self.models[base_hash]
        model, _m, _v = aggregate_state(
            decode(base),
            [(decode(updates[u.hash]), u.weight) for u in accepted],
            ServerOptimizer.from_rules(self.rules),
        )
        return encode(model, like=self.manifest), base, updates

    def commit(self, number: int, mode: str) -> tuple[float, int, float]:
        """One timed commit of round ``number``: seconds, proposals and transient MB."""
        model, base, updates = self.aggregate(number)
        started = time.perf_counter()
        if mode == "checked":
            self.aggregator.commit_aggregate(number, model, base=base, updates=updates, max_proposal_bytes=self.budget)
            proposals = len(self.aggregator.last_chunk_results) + 1
        else:
            proposals = _hash_only_commit(self.aggregator, number, model, base, updates, self.budget)
        seconds = time.perf_counter() - started
        self.models[hashlib.sha256(model).hexdigest()] = model
        inputs = AggregateInputs.for_round(self.aggregator, number, base=base, updates=updates)
        sent = len(model) + sum(inputs.size(first, count) for first, count in _ranges(inputs, self.budget, len(model)))
        return seconds, proposals, sent / 1e6


def _ranges(inputs: AggregateInputs, budget: int, fixed: int) -> list[tuple[int, int]]:
    plan = inputs.plan(budget, fixed)
    return [*plan.batches, (plan.inline_from, plan.chunks - plan.inline_from)]


def _hash_only_commit(
    client: FedLedgerClient, number: int, model: bytes, base: bytes, updates: dict[str, bytes], budget: int
) -> int:
    """``FedLedgerClient.commit_aggregate``'s steps, on the baseline transactions; returns the proposals sent."""
    inputs = AggregateInputs.for_round(client, number, base=base, updates=updates)
    plan = inputs.plan(budget, len(model))
    for first, count in plan.batches:
        client.contract.submit(
            HASH_ONLY["AggregateChunks"], arguments=[number, first, count], transient=inputs.transient(first, count)
        )
    inline = plan.chunks - plan.inline_from
    client.contract.submit(
        HASH_ONLY["CommitAggregate"],
        arguments=[number, json.dumps(sorted(updates)), "{}", plan.inline_from if inline else ""],
        transient={MODEL_FIELD: model, **inputs.transient(plan.inline_from, inline)},
    )
    return len(plan.batches) + 1


def bench_ledger(
    bench: CheckBench,
    sizes: Sequence[int],
    repeats: int,
    updates: Sequence[bytes],
    report: dict[str, Any],
    progress: Callable[[str], None] = logger.info,
) -> list[CommitRun]:
    """For each n (ascending): a warm-up round at the first, then ``repeats`` runs of each mode, alternating
    which goes first. Every run's row goes into ``report["runs"]``."""
    runs: list[CommitRun] = []
    for index, n in enumerate(sorted(sizes)):
        bench.ensure_trainers(n, updates)
        if index == 0:
            bench.commit(bench.play_round(n), "checked")  # warm-up (connections, caches, first-call costs)
        for run in range(1, repeats + 1):
            order = MODES if run % 2 else tuple(reversed(MODES))
            for mode in order:
                number = bench.play_round(n)
                seconds, proposals, mb = bench.commit(number, mode)
                result = CommitRun(bench.name, n, mode, run, seconds, proposals, mb)
                runs.append(result)
                report["runs"].append(result.row())
                progress(f"{bench.name} n={n} {mode} run {run}: {seconds:.3f} s, {proposals} proposal(s), {mb:.1f} MB")
    return runs


def in_process(
    sizes: Sequence[int], updates: Sequence[bytes], shapes: dict[str, tuple[int, int]], repeats: int = 3
) -> list[dict[str, Any]]:
    """Per n, medians over ``repeats`` in this process: the arithmetic alone (``aggregate_state`` over decoded
    updates, float64) and SHA-256 of the n updates' bytes, both single-threaded numpy / hashlib."""
    base = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    rows = []
    for n in sorted(sizes):
        states: list[tuple[NDState, int]] = [(decode(u), 10_000 + i) for i, u in enumerate(updates[:n])]
        arithmetic, hashing = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            aggregate_state(base, states, ServerOptimizer())
            t1 = time.perf_counter()
            for u in updates[:n]:
                hashlib.sha256(u).digest()
            t2 = time.perf_counter()
            arithmetic.append(t1 - t0)
            hashing.append(t2 - t1)
        rows.append(
            {
                "n": n,
                "arithmetic_s": round(statistics.median(arithmetic), 4),
                "sha256_s": round(statistics.median(hashing), 4),
            }
        )
    return rows


__all__ = [
    "MODES",
    "CheckBench",
    "CommitRun",
    "bench_ledger",
    "in_process",
    "lora_shapes",
    "make_updates",
    "median_rows",
]

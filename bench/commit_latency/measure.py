"""The measurements of the commit-latency study: rounds of concurrent SubmitUpdate, lone transactions step by
step, and the contract's own per-update compute.

SubmitUpdate is timed one transaction at a time on purpose, so this module calls the SDK client directly
(``submit_update``) instead of driving whole rounds: a round is opened for a run and abandoned afterwards,
nothing is aggregated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import numpy as np
from tqdm import tqdm

from fedledger.bench.commit_latency.probe import FabricProbe
from fedledger.bench.ledgers import (
    PRIVACY,
    SAMPLES,
    SCHEMA,
    SHAPES,
    LedgerUnderTest,
    make_update,
    until_discovered,
    zero_model,
)
from fedledger.chaincode import errors as contract_errors
from fedledger.sdk.backend import Proposal
from fedledger.sdk.client import UPDATE_FIELD, FedLedgerClient

logger = logging.getLogger("bench.commit_latency")

DONE = ("aggregated", "abandoned")
TRAIN_LOSS = 0.5

# --- results -----------------------------------------------------------------------------------

STAT_KEYS = (
    "n",
    "committed",
    "errors",
    "mvcc_retries",
    "p50_ms",
    "p99_ms",
    "mean_ms",
    "max_ms",
    "throughput_tps",
    "wall_s",
)


@dataclasses.dataclass
class RunResult:
    """One run: ``n`` submissions, ``concurrency`` at a time; ``latencies`` (seconds) of the committed ones."""

    backend: str
    concurrency: int
    run: int
    n: int
    errors: int
    latencies: list[float]
    wall: float
    retried: int = 0
    error_samples: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    def p(self, q: float) -> float:
        """The ``q``-th percentile of the latencies, in ms (NaN when nothing committed)."""
        return float(np.percentile(np.asarray(self.latencies), q)) * 1000 if self.latencies else float("nan")

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def throughput(self) -> float:
        """Commits per second of wall time."""
        return self.ok / self.wall if self.wall > 0 else float("nan")

    def row(self) -> dict[str, Any]:
        """The run as a CSV/JSON row: :data:`STAT_KEYS` plus backend, concurrency and run number."""
        return {
            "backend": self.backend,
            "concurrency": self.concurrency,
            "run": self.run,
            "n": self.n,
            "committed": self.ok,
            "errors": self.errors,
            "mvcc_retries": self.retried,
            "p50_ms": round(self.p(50), 2),
            "p99_ms": round(self.p(99), 2),
            "mean_ms": round(self.mean_ms, 2),
            "max_ms": round(max(self.latencies) * 1000, 2) if self.latencies else float("nan"),
            "throughput_tps": round(self.throughput, 2),
            "wall_s": round(self.wall, 3),
        }


def median_row(runs: Sequence[RunResult]) -> dict[str, Any]:
    """The median of each statistic over the runs of one cell; ``errors`` is the total over the runs."""
    rows = [r.row() for r in runs]
    out: dict[str, Any] = {"backend": runs[0].backend, "concurrency": runs[0].concurrency, "run": "median"}
    for key in STAT_KEYS:
        out[key] = round(statistics.median(float(r[key]) for r in rows), 2)
    for key in ("n", "committed", "mvcc_retries"):
        out[key] = int(out[key])
    out["errors"] = sum(r.errors for r in runs)  # all runs together, not a median
    out["runs"] = len(rows)
    return out


def plan_cells(concurrency: Sequence[int], min_n: int, per_client: int) -> list[tuple[int, int]]:
    """(concurrency, submissions per run): at least ``min_n``, and ``per_client`` per worker."""
    return [(c, max(min_n, per_client * c)) for c in concurrency]


# --- the ledger under test ---------------------------------------------------------------------


class SubmitBench:
    """A ledger with an aggregator, a genesis model and ``trainers`` registered trainers (alternating between
    two organisations, each its own identity and, on Fabric, its own gRPC connection). Each run gets a fresh
    round, abandoned afterwards."""

    def __init__(self, ledger: LedgerUnderTest, trainers: int, workers: int) -> None:
        self.ledger = ledger
        self.name = ledger.name
        tag = f"{int(time.time()):x}"
        first = ledger.orgs[0]
        admin = ledger.client(first, "Admin", admin=True)
        with contextlib.suppress(contract_errors.AlreadyExists):
            until_discovered(lambda: admin.init_consortium({"member_msps": ledger.member_msps}))
        self.aggregator = ledger.client(first, f"bench-aggregator-{tag}")
        ledger.grant(self.aggregator, "aggregator")
        self.genesis = self._genesis()
        self.trainers = [
            ledger.client(ledger.orgs[i % len(ledger.orgs)], f"bench-trainer{i}-{tag}") for i in range(trainers)
        ]
        _register_all(ledger, self.trainers, workers, self.name)

    def _genesis(self) -> str:
        try:
            latest = self.aggregator.latest_model()
        except contract_errors.NotFound:
            return self.aggregator.register_genesis_model(zero_model(), name="bench-adapter").hash
        if set(latest.manifest) != set(SHAPES):
            raise SystemExit(
                f"the ledger's latest model has other tensors ({sorted(latest.manifest)}); the benchmark needs a "
                "fresh network (drop --fabric-network-dir to let it bring up its own)"
            )
        return latest.hash

    def open_round(self) -> int:
        """Opens the next round (abandoning a leftover open one) and returns its number."""
        rounds = self.aggregator.rounds()
        number = max((r.number for r in rounds), default=0) + 1
        if rounds:
            last = max(rounds, key=lambda r: r.number)
            if last.status not in DONE:
                self.aggregator.abandon_round(last.number, "benchmark: make room for a new round")
        self.aggregator.open_round(number, base_model=self.genesis, deadline=time.time() + 3600)
        return number

    def end_round(self, number: int) -> None:
        self.aggregator.abandon_round(number, "benchmark round done")

    def retried(self) -> int:
        return self.ledger.retried()


def _register_all(ledger: LedgerUnderTest, clients: Sequence[FedLedgerClient], workers: int, what: str) -> None:
    def register(client: FedLedgerClient) -> None:
        ledger.enrol(client, dataset_size=1000, schema_hash=SCHEMA)
        with contextlib.suppress(contract_errors.AlreadyExists):
            client.register("trainer")

    with ThreadPoolExecutor(max(1, workers)) as pool:
        futures = [pool.submit(register, c) for c in clients]
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"register {what}", leave=False):
            future.result()


# --- measured runs -----------------------------------------------------------------------------


def measure(bench: SubmitBench, concurrency: int, n: int, run: int, rng: np.random.Generator) -> RunResult:
    """One round: ``n`` different trainers each submit one update, ``concurrency`` at a time."""
    if n > len(bench.trainers):
        raise ValueError(f"{n} submissions need {n} trainers; only {len(bench.trainers)} are registered")
    number = bench.open_round()
    updates = [make_update(rng) for _ in range(n)]
    trainers = bench.trainers[:n]
    retried_before = bench.retried()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        started = time.perf_counter()
        try:
            trainers[i].submit_update(number, updates[i], samples=SAMPLES, privacy=PRIVACY, train_loss=TRAIN_LOSS)
        except Exception as exc:  # counted and reported; the run goes on
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
            return
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)

    bar = tqdm(total=n, desc=f"{bench.name} c={concurrency} run {run}", leave=False)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency, thread_name_prefix=f"c{concurrency}") as pool:
        for future in as_completed([pool.submit(submit, i) for i in range(n)]):
            future.result()
            bar.update(1)
    wall = time.perf_counter() - started
    bar.close()
    bench.end_round(number)
    if errors:
        logger.warning(
            "%s c=%d run %d: %d of %d failed, e.g. %s", bench.name, concurrency, run, len(errors), n, errors[0]
        )
    result = RunResult(
        bench.name, concurrency, run, n, len(errors), latencies, wall, bench.retried() - retried_before, errors[:3]
    )
    logger.info(
        "%s c=%d run %d: n %d, p50 %.1f ms, p99 %.1f ms, %.1f commits/s",
        bench.name,
        concurrency,
        run,
        n,
        result.p(50),
        result.p(99),
        result.throughput,
    )
    return result


def bench_ledger(
    bench: SubmitBench,
    plan: list[tuple[int, int]],
    repeats: int,
    rng: np.random.Generator,
    probe: FabricProbe | None,
    report: dict[str, Any],
) -> None:
    """A warm-up round, then ``repeats`` runs per (concurrency, n) cell into ``report`` (runs, medians, errors;
    with a ``probe``, each cell's metrics and CPU under ``profile``)."""
    warm = min(10, len(bench.trainers))
    measure(bench, warm, warm, 0, rng)  # warm-up round (connections, caches); not reported
    for concurrency, n in plan:
        before = probe.snapshot() if probe else None
        runs = [measure(bench, concurrency, n, run, rng) for run in range(1, repeats + 1)]
        if probe and before is not None:
            report["profile"][f"{bench.name} c={concurrency}"] = probe.delta(
                before, probe.snapshot(), sum(r.ok for r in runs)
            )
        report["runs"] += [r.row() for r in runs]
        report["medians"].append(median_row(runs))
        report["errors"] += [e for r in runs for e in r.error_samples[:1]]


def lone_breakdown(bench: SubmitBench, count: int, rng: np.random.Generator) -> list[dict[str, float]]:
    """Sequential lone SubmitUpdate transactions on Fabric, split into the Gateway steps: endorse, submit, commit
    status. ``submit_update`` does the three in one call, so the proposal goes to the trainer's backend here."""
    location = bench.ledger.location
    number = bench.open_round()
    rows = []
    for i in tqdm(range(count), desc=f"{bench.name} lone breakdown", leave=False):
        backend = bench.ledger.backend(bench.trainers[i])
        proposal = Proposal(
            location.channel,
            location.chaincode,
            "SubmitUpdate",
            tuple(str(a).encode() for a in (number, SAMPLES, json.dumps(PRIVACY.to_dict()), repr(TRAIN_LOSS))),
            {UPDATE_FIELD: make_update(rng)},
        )
        t0 = time.perf_counter()
        transaction = backend.endorse(proposal)
        t1 = time.perf_counter()
        backend.submit_endorsed(transaction)
        t2 = time.perf_counter()
        code, _block = backend.commit_status(proposal.channel, transaction.transaction_id)
        t3 = time.perf_counter()
        if code != "VALID":
            logger.warning("lone transaction %s committed %s", transaction.transaction_id, code)
            continue
        rows.append(
            {
                "endorse_ms": (t1 - t0) * 1000,
                "submit_ms": (t2 - t1) * 1000,
                "commit_status_ms": (t3 - t2) * 1000,
                "total_ms": (t3 - t0) * 1000,
            }
        )
    bench.end_round(number)
    return rows


def contract_compute_profile(repeats: int = 200) -> dict[str, float]:
    """The contract's per-update work at SubmitUpdate for one 100 KB update, in this process (median ms): the
    same calls as ``chaincode/transactions/updates.py``."""
    from fedledger.anomaly.features import update_features
    from fedledger.chaincode.payloads import decode_payload
    from fedledger.chaincode.records import Rules
    from fedledger.tensors import decode, manifest, sha256_hex

    data = make_update(np.random.default_rng(1))
    expected = manifest(decode(zero_model()))
    sketch_dim = Rules().sketch_dim
    steps: dict[str, list[float]] = {
        "decode_payload (safetensors, manifest, finite)": [],
        "update_features (norms + count sketch)": [],
        "sha256": [],
    }
    for _ in range(repeats):
        t0 = time.perf_counter()
        parsed = decode_payload(data, "update", expected=expected)
        t1 = time.perf_counter()
        update_features(parsed, sketch_dim=sketch_dim)
        t2 = time.perf_counter()
        sha256_hex(data)
        t3 = time.perf_counter()
        for key, value in zip(steps, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            steps[key].append(value)
    return {k: round(statistics.median(v) * 1000, 3) for k, v in steps.items()}

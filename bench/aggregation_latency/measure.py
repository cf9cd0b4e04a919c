"""The measurements of the aggregation-latency study: this machine's memory bandwidth, the contract's detector
and FedAvg per (update size, updates per round) cell, in process, and SubmitUpdate commit latency with the
commit-latency study's own code."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from fedledger.anomaly.features import direction_of, update_features
from fedledger.bench.commit_latency.measure import SubmitBench, bench_ledger, plan_cells
from fedledger.bench.commit_latency.render import verdicts
from fedledger.bench.ledgers import PRIVACY, LedgerUnderTest, bench_network, configured_batch_timeout, make_update
from fedledger.chaincode.privacy_budget import epsilon_of
from fedledger.chaincode.records import Rules
from fedledger.chaincode.verdicts import detect, screened
from fedledger.tensors import NDState
from fedledger.trainer.strategy import FedAvg

logger = logging.getLogger("bench.aggregation_latency")

MB = 1_000_000
RANK = 8
ROUND = 7  # any round number: it only seeds the detector
SAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class Grid:
    """Repeats per cell (medians are quoted), distinct update bytes held per size, and the largest cell."""

    repeats: int = 3
    pool_mb: float = 512.0
    max_cell_gb: float = 60.0


@dataclasses.dataclass(frozen=True)
class CommitPlan:
    """The commit-latency part: ledgers, concurrency levels, submissions per run, runs per cell, and where the
    Fabric network of its own runs."""

    backends: Sequence[str]
    concurrency: Sequence[int]
    n: int
    repeats: int
    network_dir: Path
    port_offset: int
    seed: int = 0


def memory_bandwidth(size_mb: int = 512, repeats: int = 7) -> dict[str, float]:
    """Single-thread DRAM bandwidth in GB/s (10⁹ B/s): read = a.sum(); copy = (read + write) bytes / time."""
    a = np.random.default_rng(0).standard_normal(size_mb * MB // 8)
    b = np.empty_like(a)
    reads, copies = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.sum()
        t1 = time.perf_counter()
        np.copyto(b, a)
        t2 = time.perf_counter()
        reads.append(a.nbytes / (t1 - t0) / 1e9)
        copies.append(2 * a.nbytes / (t2 - t1) / 1e9)
    return {
        "read_gbps": round(statistics.median(reads), 2),
        "copy_gbps": round(statistics.median(copies), 2),
        "array_mb": size_mb,
        "repeats": repeats,
    }


def lora_shapes(size_bytes: float) -> dict[str, tuple[int, int]]:
    """LoRA A/B pairs of rank 8 whose float32 total is ``size_bytes``; larger adapters adapt more layers."""
    layers = max(2, min(64, round(2 * size_bytes / MB)))
    width = max(1, round(size_bytes / 4 / (2 * RANK * layers)))
    shapes = {}
    for layer in range(layers):
        shapes[f"layers.{layer}.q_proj.lora_A"] = (RANK, width)
        shapes[f"layers.{layer}.q_proj.lora_B"] = (width, RANK)
    return shapes


def make_pool(shapes: dict[str, tuple[int, int]], count: int, seed: int) -> list[NDState]:
    """``count`` random float32 updates of ``shapes``."""
    rng = np.random.default_rng(seed)
    return [{k: (0.01 * rng.standard_normal(s, dtype=np.float32)) for k, s in shapes.items()} for _ in range(count)]


def median_time(call: Callable[[], Any], repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_size(size_mb: float, counts: Sequence[int], grid: Grid, bandwidth: float) -> list[dict[str, Any]]:
    """Every n of ``counts`` at update size ``size_mb``: the detector as the contract runs it (features at
    SubmitUpdate, the verdict at FinalizeRound) and FedAvg, against the bound n·S / ``bandwidth`` (GB/s)."""
    shapes = lora_shapes(size_mb * MB)
    one = int(sum(math.prod(s) for s in shapes.values()) * 4)
    # Distinct updates: enough that a pass over them cannot be served from the caches, at most max(counts).
    distinct = int(min(max(counts), max(8, math.ceil(grid.pool_mb * MB / one))))
    logger.info(
        "S = %s MB: %d tensors, %d bytes per update, %d distinct updates in memory", size_mb, len(shapes), one, distinct
    )
    pool = make_pool(shapes, distinct, seed=int(size_mb * 1000))
    rules = Rules()

    # SubmitUpdate: every update is featurised alone when it arrives; a round pays n times this.
    # The first call per tensor name is cold (the sketch's hash streams are derived, then cached by the
    # long-lived chaincode server); the median over the pool is the steady state of a running network.
    per_update = [0.0] * distinct
    stored = []
    for i, update in enumerate(tqdm(pool, desc=f"update_features {size_mb} MB", leave=False)):
        t0 = time.perf_counter()
        stored.append(update_features(update, sketch_dim=rules.sketch_dim))
        per_update[i] = time.perf_counter() - t0
    features_s = statistics.median(per_update)
    # The chaincode servers run numpy with OpenBLAS' default thread pool; on a saturated machine its
    # threads wait for each other. The same work with BLAS limited to one thread, for comparison.
    with threadpool_limits(limits=1, user_api="blas"):
        features_blas1_s = statistics.median(
            median_time(lambda u=u: update_features(u, sketch_dim=rules.sketch_dim), 1)
            for u in pool[: min(distinct, 30)]
        )

    rows = []
    strategy = FedAvg()
    zero = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    for n in counts:
        budget = n * one
        if budget > grid.max_cell_gb * 1e9:
            rows.append({"size_mb": size_mb, "n": n, "status": f"skipped: {budget / 1e9:.0f} GB > --max-cell-gb"})
            continue
        # What FinalizeRound reads: this round's n update records and the previous round's (its direction).
        records = [stored[i % distinct] for i in range(n)]
        results = [(pool[i % distinct], SAMPLES) for i in range(n)]

        def finalize(records: list[dict[str, Any]] = records) -> None:
            previous = direction_of(records, [SAMPLES] * len(records))
            detect(
                ROUND,
                rules,
                [screened(f, samples=SAMPLES, epsilon=epsilon_of([PRIVACY], PRIVACY.delta)) for f in records],
                previous,
            )

        # Each repeat reads n·S bytes; big cells get fewer repeats so the whole study stays bounded.
        repeats = grid.repeats if budget <= 2e9 else 1
        screen_s = median_time(finalize, repeats)
        with threadpool_limits(limits=1, user_api="blas"):
            screen_blas1_s = median_time(finalize, repeats)
        fedavg_s = median_time(lambda results=results: strategy.aggregate_fit(ROUND, zero, results), repeats)
        detector_s = n * features_s + screen_s
        total = detector_s + fedavg_s
        bound = budget / (bandwidth * 1e9)
        row = {
            "size_mb": size_mb,
            "n": n,
            "status": "ok",
            "update_bytes": one,
            "tensors": len(shapes),
            "distinct_in_memory": min(n, distinct),
            "repeats": repeats,
            "features_per_update_ms": round(features_s * 1000, 3),
            "features_cold_ms": round(per_update[0] * 1000, 3),
            "features_blas1_per_update_ms": round(features_blas1_s * 1000, 3),
            "detector_finalize_blas1_s": round(screen_blas1_s, 4),
            "detector_submit_s": round(n * features_s, 4),
            "detector_finalize_s": round(screen_s, 4),
            "detector_s": round(detector_s, 4),
            "fedavg_s": round(fedavg_s, 4),
            "total_s": round(total, 4),
            "bound_s": round(bound, 5),
            "ratio": round(total / bound, 1),
            "fedavg_ratio": round(fedavg_s / bound, 1),
            "load_1min": round(os.getloadavg()[0], 2),
        }
        logger.info("S = %s MB, n = %d: %s", size_mb, n, row)
        rows.append(row)
    del pool
    return rows


def commit_latencies(plan: CommitPlan) -> dict[str, Any]:
    """SubmitUpdate p50/p99 with the commit-latency study's ledgers and runs (:func:`bench_ledger`), small
    parameters; no metrics probe."""
    cells = plan_cells(plan.concurrency, plan.n, 2)
    trainers = max(n for _c, n in cells)
    workers = max(plan.concurrency)
    report: dict[str, Any] = {"runs": [], "medians": [], "errors": [], "profile": {}, "plan": cells}
    rng = np.random.default_rng(plan.seed)
    if "embedded" in plan.backends:
        embedded = LedgerUnderTest.embedded()
        try:
            bench_ledger(SubmitBench(embedded, trainers, workers), cells, plan.repeats, rng, None, report)
        finally:
            embedded.close()
    if "fabric" in plan.backends:
        with bench_network(plan.network_dir, plan.port_offset, "default", False) as network_dir:
            name = f"fabric (BatchTimeout {configured_batch_timeout(network_dir)})"
            fabric = LedgerUnderTest.fabric(network_dir, network_dir / "bench-identities", name=name)
            try:
                bench_ledger(SubmitBench(fabric, trainers, workers), cells, plan.repeats, rng, None, report)
            finally:
                fabric.close()
    report["verdicts"] = verdicts(report["medians"])
    report["update_bytes"] = len(make_update(rng))
    return report

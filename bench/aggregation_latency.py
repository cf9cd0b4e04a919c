#!/usr/bin/env python3
"""Time to aggregate a round (detector + FedAvg) vs number and size of updates, against this machine's
memory-bandwidth bound; and SubmitUpdate commit latency on the embedded ledger and on real Fabric.

What one run does (bounded; everything on 127.0.0.1)::

    .venv/bin/python bench/aggregation_latency.py            # n = 10..1000, 0.1..50 MB
    .venv/bin/python bench/aggregation_latency.py --quick    # n = 10..100, 0.1..10 MB, embedded commits only

1. Memory bandwidth of this machine: numpy read (sum) and copy of a 512 MiB array, median of repeats.
2. Per update size S: a pool of distinct LoRA-shaped float32 updates (at least ``--pool-mb`` in total so
   that every pass reads from DRAM, not from the caches). The contract's path, timed in process:
   ``anomaly.features.update_features`` on one update (what each endorsing peer runs at SubmitUpdate;
   a round of n updates costs n times this), then per n ``FinalizeRound``'s detector
   (``chaincode.transactions.finalize.detect`` → ``anomaly.screening.screen_round``) over n feature records,
   and ``trainer.strategy.FedAvg`` over the n updates. Medians of ``--repeats``.
3. Lower bound per cell: the n·S bytes every update has to be read at least once ÷ bandwidth; the table
   prints measured / bound.
4. Commit latency: ``bench/commit_latency.py``'s own ledgers and ``measure`` (embedded; Fabric on its own
   network at port offset 10000, brought up and taken down by its ``bench_network``), p50/p99.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from harness import (
    CORE_PACKAGES,
    DOCS,
    FABRIC_PACKAGES,
    RESULTS,
    command_line,
    figure_link,
    machine_facts,
    markdown_table,
    print_report,
    pyplot,
    render_page,
    save_figure,
    write_csv,
    write_json,
)
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from fedledger.anomaly.features import direction_of, update_features
from fedledger.chaincode.records import Rules
from fedledger.chaincode.transactions.finalize import detect
from fedledger.trainer.strategy import FedAvg

logger = logging.getLogger("bench.aggregation_latency")

STUDY = "aggregation_latency"
MB = 1_000_000
RANK = 8
ROUND = 7  # any round number: it only seeds the detector
SAMPLES = 1000
EPSILON = 0.001


# --- memory bandwidth --------------------------------------------------------------------------


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


# --- updates -----------------------------------------------------------------------------------


def lora_shapes(size_bytes: float) -> dict[str, tuple[int, int]]:
    """LoRA A/B pairs of rank 8 whose float32 total is ``size_bytes``; larger adapters adapt more layers."""
    layers = max(2, min(64, round(2 * size_bytes / MB)))
    width = max(1, round(size_bytes / 4 / (2 * RANK * layers)))
    shapes = {}
    for layer in range(layers):
        shapes[f"layers.{layer}.q_proj.lora_A"] = (RANK, width)
        shapes[f"layers.{layer}.q_proj.lora_B"] = (width, RANK)
    return shapes


def make_pool(shapes: dict[str, tuple[int, int]], count: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{k: (0.01 * rng.standard_normal(s, dtype=np.float32)) for k, s in shapes.items()} for _ in range(count)]


def nbytes(update: dict[str, np.ndarray]) -> int:
    return sum(a.nbytes for a in update.values())


def median_time(call: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- one update size ---------------------------------------------------------------------------


def measure_size(
    size_mb: float, counts: Sequence[int], args: argparse.Namespace, bandwidth: float
) -> list[dict[str, Any]]:
    shapes = lora_shapes(size_mb * MB)
    one = int(sum(math.prod(s) for s in shapes.values()) * 4)
    # Distinct updates: enough that a pass over them cannot be served from the caches, at most max(counts).
    distinct = int(min(max(counts), max(8, math.ceil(args.pool_mb * MB / one))))
    logger.info(
        "S = %s MB: %d tensors, %d bytes per update, %d distinct updates in memory", size_mb, len(shapes), one, distinct
    )
    pool = make_pool(shapes, distinct, seed=int(size_mb * 1000))
    sketch_dim = Rules().sketch_dim

    # SubmitUpdate: every update is featurised alone when it arrives; a round pays n times this.
    # The first call per tensor name is cold (the sketch's hash streams are derived, then cached by the
    # long-lived chaincode server); the median over the pool is the steady state of a running network.
    per_update = [0.0] * distinct
    feature_records = []
    for i, update in enumerate(tqdm(pool, desc=f"update_features {size_mb} MB", leave=False)):
        t0 = time.perf_counter()
        feature_records.append(update_features(update, sketch_dim=sketch_dim, samples=SAMPLES, epsilon=EPSILON))
        per_update[i] = time.perf_counter() - t0
    features_s = statistics.median(per_update)
    # The chaincode servers run numpy with OpenBLAS' default thread pool; on a saturated machine its
    # threads wait for each other. The same work with BLAS limited to one thread, for comparison.
    with threadpool_limits(limits=1, user_api="blas"):
        features_blas1_s = statistics.median(
            median_time(lambda u=u: update_features(u, sketch_dim=sketch_dim, samples=SAMPLES, epsilon=EPSILON), 1)
            for u in pool[: min(distinct, 30)]
        )

    rows = []
    rules = Rules()
    strategy = FedAvg()
    zero = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    for n in counts:
        budget = n * one
        if budget > args.max_cell_gb * 1e9:
            rows.append({"size_mb": size_mb, "n": n, "status": f"skipped: {budget / 1e9:.0f} GB > --max-cell-gb"})
            continue
        # What FinalizeRound reads: this round's n update records and the previous round's (its direction).
        records = [
            SimpleNamespace(features=feature_records[i % distinct], samples=SAMPLES, epsilon=EPSILON) for i in range(n)
        ]
        results = [(pool[i % distinct], SAMPLES) for i in range(n)]

        def finalize(records: list[SimpleNamespace] = records) -> None:
            previous = direction_of([r.features for r in records], [r.samples for r in records])
            detect(ROUND, rules, records, previous)

        # Each repeat reads n·S bytes; big cells get fewer repeats so the whole study stays bounded.
        repeats = args.repeats if budget <= 2e9 else 1
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


# --- commit latency (bench/commit_latency.py's own code) ---------------------------------------


def commit_latencies(args: argparse.Namespace) -> dict[str, Any]:
    """SubmitUpdate p50/p99 from ``commit_latency``'s ledgers and ``bench_ledger``, small parameters."""
    import commit_latency as cl

    plan = cl.plan_cells(args.commit_concurrency, args.commit_n, 2)
    trainers = max(n for _c, n in plan)
    report: dict[str, Any] = {"runs": [], "medians": [], "errors": [], "profile": {}, "plan": plan}
    rng = np.random.default_rng(args.seed)
    if "embedded" in args.commit_backends:
        ledger = cl.EmbeddedLedgerUnderTest(trainers, max(args.commit_concurrency))
        try:
            cl.bench_ledger(ledger, plan, args.commit_repeats, rng, None, report)
        finally:
            ledger.close()
    if "fabric" in args.commit_backends:
        with cl.bench_network(args.commit_network_dir, args.commit_port_offset, "default", False) as network_dir:
            name = f"fabric (BatchTimeout {cl.configured_batch_timeout(network_dir)})"
            fabric = cl.FabricLedgerUnderTest(network_dir, trainers, max(args.commit_concurrency), name=name)
            try:
                cl.bench_ledger(fabric, plan, args.commit_repeats, rng, None, report)
            finally:
                fabric.close()
    report["verdicts"] = cl.verdicts(report["medians"])
    report["update_bytes"] = len(cl.make_update(rng))
    return report


# --- outputs -----------------------------------------------------------------------------------

HEADERS = (
    "S (MB)",
    "n",
    "features/update ms",
    "same, BLAS 1 thread",
    "detector: submit s (n x features)",
    "detector: finalize s",
    "same, BLAS 1 thread",
    "FedAvg s",
    "total s",
    "bound s (n·S / BW)",
    "total / bound",
    "FedAvg / bound",
    "load",
)


def table_rows(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    out = []
    for r in rows:
        if r["status"] != "ok":
            out.append([r["size_mb"], r["n"], r["status"], *["—"] * (len(HEADERS) - 3)])
            continue
        out.append(
            [
                r["size_mb"],
                r["n"],
                r["features_per_update_ms"],
                r["features_blas1_per_update_ms"],
                r["detector_submit_s"],
                r["detector_finalize_s"],
                r["detector_finalize_blas1_s"],
                r["fedavg_s"],
                r["total_s"],
                r["bound_s"],
                r["ratio"],
                r["fedavg_ratio"],
                r["load_1min"],
            ]
        )
    return out


def commit_rows(commit: dict[str, Any]) -> list[list[Any]]:
    return [
        [m["backend"], m["concurrency"], m["runs"], m["n"], m["errors"], m["p50_ms"], m["p99_ms"], m["throughput_tps"]]
        for m in commit.get("medians", [])
    ]


COMMIT_HEADERS = ("ledger", "concurrency", "runs", "n/run", "failed", "p50 ms", "p99 ms", "commits/s")


def plot(rows: Sequence[dict[str, Any]], bandwidth: float) -> list[Path]:
    plt = pyplot()
    ok = [r for r in rows if r["status"] == "ok"]
    sizes = list(dict.fromkeys(r["size_mb"] for r in ok))
    figure, ax = plt.subplots(figsize=(7.5, 5))
    for size in sizes:
        cells = [r for r in ok if r["size_mb"] == size]
        ns = [r["n"] for r in cells]
        (line,) = ax.plot(ns, [r["total_s"] for r in cells], "-o", label=f"{size} MB: detector + FedAvg")
        ax.plot(ns, [r["bound_s"] for r in cells], "--", color=line.get_color(), lw=0.9, label=f"{size} MB: bound")
    ax.set(xscale="log", yscale="log", xlabel="updates per round n", ylabel="seconds")
    ax.set_title(f"Time to aggregate a round vs n (dashed: n·S / {bandwidth:.1f} GB/s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    paths = [save_figure(figure, RESULTS / "aggregation_latency.png")]

    figure, axes = plt.subplots(1, len(sizes), figsize=(3.2 * len(sizes), 4), squeeze=False)
    parts = (
        ("detector_submit_s", "detector (SubmitUpdate features)"),
        ("detector_finalize_s", "detector (FinalizeRound)"),
        ("fedavg_s", "FedAvg"),
    )
    for ax, size in zip(axes[0], sizes, strict=True):
        cells = [r for r in ok if r["size_mb"] == size]
        positions = np.arange(len(cells))
        totals = np.asarray([r["total_s"] for r in cells])
        bottom = np.zeros(len(cells))
        # Shares, not seconds: stacked bars on a log axis would hide the smaller parts.
        for key, label in parts:
            share = 100 * np.asarray([r[key] for r in cells]) / totals
            ax.bar(positions, share, bottom=bottom, label=label)
            bottom += share
        for x, total in zip(positions, totals, strict=True):
            ax.text(x, 101, f"{total:.3g} s", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(positions, [str(r["n"]) for r in cells])
        ax.set(title=f"S = {size} MB", xlabel="n", ylabel="share of the time (%)", ylim=(0, 112))
    axes[0][0].legend(fontsize=7)
    paths.append(save_figure(figure, RESULTS / "aggregation_latency_breakdown.png"))
    return paths


def render(report: dict[str, Any]) -> str:
    bw = report["bandwidth"]
    rows = [r for r in report["rows"] if r["status"] == "ok"]
    worst = max(rows, key=lambda r: r["ratio"]) if rows else None
    best = min(rows, key=lambda r: r["ratio"]) if rows else None
    commit = report.get("commit") or {}
    sections = [
        (
            "Method",
            "\n".join(
                [
                    f"- Memory bandwidth (single thread, numpy, {bw['array_mb']} MB float64 array, median of "
                    f"{bw['repeats']}): read (`a.sum()`) **{bw['read_gbps']} GB/s**, copy (read + write bytes) "
                    f"{bw['copy_gbps']} GB/s. Bound = n·S / {report['bandwidth_used']} GB/s (the larger of the "
                    "two, so the bound is a true lower bound): every byte of every update read once.",
                    "- Updates: float32 LoRA A/B pairs of rank 8 (2 layers up to 1 MB, 2 per MB above, at most 64), "
                    f"random; at least {report['pool_mb']} MB of distinct updates in memory per size (n larger than "
                    "the pool cycles through it), so passes read from DRAM.",
                    "- Detector, as the contract runs it: `update_features` once per update at SubmitUpdate (norms, "
                    "per-layer statistics, count sketch; the round total is n times the per-update median over the "
                    "pool), and `chaincode.transactions.finalize.detect` (→ `anomaly.screening.screen_round`: round "
                    "features + IsolationForest) over the n stored feature records at FinalizeRound, with the "
                    "default `Rules()` (sketch_dim, n_estimators...).",
                    "- FedAvg: `trainer.strategy.FedAvg().aggregate_fit` over the n updates (float64 accumulation, "
                    "as the aggregator commits it).",
                    f"- Medians of {report['repeats']} repeats (1 for cells above 2 GB). One process, single-threaded "
                    "numpy (the chaincode runs the detector the same way on each endorsing peer).",
                    "- Detector: the code in this tree (" + report["detector_version"] + ").",
                ]
            ),
        ),
        ("Time to aggregate a round", markdown_table(HEADERS, table_rows(report["rows"]))),
    ]
    if worst and best:
        sections.append(
            (
                "Against the bandwidth bound",
                f"Measured / bound ranges from **{best['ratio']}x** (S = {best['size_mb']} MB, n = {best['n']}) to "
                f"**{worst['ratio']}x** (S = {worst['size_mb']} MB, n = {worst['n']}). FedAvg alone runs at "
                + ", ".join(
                    f"{r['fedavg_ratio']}x (S = {r['size_mb']} MB, n = {r['n']})"
                    for r in rows
                    if r["n"] == max(x["n"] for x in rows if x["size_mb"] == r["size_mb"])
                )
                + " of the bound.",
            )
        )
    if rows:
        by_size = {r["size_mb"]: r for r in rows}
        sections.append(
            (
                "Hotspot: OpenBLAS threads on a busy machine",
                "`update_features` takes each tensor's squared norm with `np.dot`, which numpy hands to OpenBLAS' "
                "thread pool (as many threads as cores); the chaincode servers run it so (network/"
                "chaincode-server.sh sets no thread limit). With the cores already busy those threads wait for each "
                "other. Per update, default vs BLAS limited to one thread (`threadpoolctl`): "
                + ", ".join(
                    f"{size} MB {r['features_per_update_ms']} ms vs {r['features_blas1_per_update_ms']} ms"
                    for size, r in by_size.items()
                )
                + f" (load average {rows[-1]['load_1min']}). Setting `OPENBLAS_NUM_THREADS=1` for the chaincode "
                "servers, or a BLAS-free sum of squares (`np.einsum('i,i->', x, x)`), removes the difference.",
            )
        )
    if commit.get("medians"):
        sections.append(
            (
                "Commit latency (SubmitUpdate, bench/commit_latency.py's code)",
                markdown_table(COMMIT_HEADERS, commit_rows(commit))
                + f"\n\nUpdate {commit['update_bytes']:,} bytes; plan (concurrency, n per run) {commit['plan']}; "
                "latency = `submit_update` call to VALID commit status on the client. Full study: "
                "[bench-commit-latency.md](bench-commit-latency.md).\n\n" + "\n".join(commit["verdicts"]),
            )
        )
    sections += [
        (
            "Target",
            "Issue 5 asks for the time to aggregate (detector + FedAvg) vs number and size of updates against the "
            "memory-bandwidth bound of this machine, and commit latency on embedded and real Fabric: **met** "
            "(measured above; no numeric target is set for this study).",
        ),
        (
            "Plots",
            figure_link(RESULTS / "aggregation_latency.png", "time vs n")
            + "\n\n"
            + figure_link(RESULTS / "aggregation_latency_breakdown.png", "breakdown"),
        ),
    ]
    if report.get("notes"):
        sections.append(("Analysis", report["notes"]))
    return render_page(
        "Latency: time to aggregate a round, and commit latency",
        command=report["command"],
        machine=report["machine"],
        sections=sections,
        intro="Generated by `bench/aggregation_latency.py`; raw numbers in "
        "`bench/results/aggregation_latency.{csv,json}`. Re-running overwrites this page.",
    )


def detector_version() -> str:
    """Which detector was measured: the git state of anomaly/ and the FinalizeRound path."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    paths = ["anomaly", "chaincode/transactions/finalize.py", "chaincode/records.py"]
    git = ["git", "-C", str(root)]
    head = subprocess.run([*git, "log", "-1", "--format=%h %s", "--", *paths], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--short", "--", *paths], capture_output=True, text=True)
    changed = sorted({line[3:] for line in dirty.stdout.splitlines() if line.strip()})
    text = f"last commit {head.stdout.strip() or 'unknown'}"
    if changed:
        # Uncommitted work is identified by the content of the files, so a later run can tell if it changed.
        import hashlib

        found = [[root / path] if (root / path).is_file() else list((root / path).rglob("*.py")) for path in paths]
        files = sorted(p for group in found for p in group if "__pycache__" not in p.parts)
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:12]
        text += f"; uncommitted changes in {', '.join(changed)} (content sha256 {digest})"
    return text


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small grid, embedded commit latency only")
    parser.add_argument("--counts", help="updates per round (default 10,30,100,300,1000; quick 10,30,100)")
    parser.add_argument("--sizes-mb", help="update sizes in MB (default 0.1,1,10,50; quick 0.1,1,10)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per cell (medians are quoted)")
    parser.add_argument("--pool-mb", type=float, default=512.0, help="distinct update bytes held per size")
    parser.add_argument("--max-cell-gb", type=float, default=60.0, help="skip cells that read more than this")
    parser.add_argument("--commit-backends", help="embedded,fabric (quick: embedded); 'none' to skip")
    parser.add_argument("--commit-concurrency", default="1,10", help="concurrency levels for commit latency")
    parser.add_argument("--commit-n", type=int, default=30, help="submissions per commit-latency run, at least")
    parser.add_argument("--commit-repeats", type=int, default=3)
    parser.add_argument(
        "--commit-network-dir", type=Path, default=Path(__file__).resolve().parents[1] / "run" / "bench-latency"
    )
    parser.add_argument("--commit-port-offset", type=int, default=10000)
    parser.add_argument("--notes", type=Path, default=Path(__file__).with_name("aggregation_latency_notes.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the doc and plots from the saved JSON (e.g. after editing the notes)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("fedledger").setLevel(logging.WARNING)
    if args.render_only:
        report = json.loads((RESULTS / f"{STUDY}.json").read_text())
        report["notes"] = args.notes.read_text().strip() if args.notes and args.notes.exists() else ""
        plot(report["rows"], report["bandwidth_used"])
        (DOCS / "bench-latency.md").write_text(render(report))
        logger.info("rewrote %s from %s", DOCS / "bench-latency.md", RESULTS / f"{STUDY}.json")
        return 0
    counts = [int(x) for x in floats(args.counts or ("10,30,100" if args.quick else "10,30,100,300,1000"))]
    sizes = floats(args.sizes_mb or ("0.1,1,10" if args.quick else "0.1,1,10,50"))
    commit_backends = args.commit_backends or ("embedded" if args.quick else "embedded,fabric")
    args.commit_backends = [] if commit_backends == "none" else [b.strip() for b in commit_backends.split(",")]
    args.commit_concurrency = [int(x) for x in args.commit_concurrency.split(",")]

    report: dict[str, Any] = {
        "command": command_line(),
        "machine": machine_facts((*CORE_PACKAGES, *FABRIC_PACKAGES), fabric_peer="fabric" in args.commit_backends),
        "counts": counts,
        "sizes_mb": sizes,
        "repeats": args.repeats,
        "pool_mb": args.pool_mb,
        "detector_version": detector_version(),
    }
    started = time.monotonic()
    report["bandwidth"] = memory_bandwidth()
    bandwidth = max(report["bandwidth"]["read_gbps"], report["bandwidth"]["copy_gbps"])
    report["bandwidth_used"] = bandwidth
    logger.info("memory bandwidth: %s", report["bandwidth"])
    report["rows"] = [row for size in sizes for row in measure_size(size, counts, args, bandwidth)]
    report["aggregation_s"] = round(time.monotonic() - started, 1)
    if args.commit_backends:
        report["commit"] = commit_latencies(args)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    report["machine"]["load average at end (1/5/15 min)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.notes and args.notes.exists():
        report["notes"] = args.notes.read_text().strip()

    table = markdown_table(HEADERS, table_rows(report["rows"]))
    print_report(
        "Latency: time to aggregate a round", command=report["command"], machine=report["machine"], table=table
    )
    print(f"\nmemory bandwidth: {report['bandwidth']}")
    if report.get("commit"):
        print("\n" + markdown_table(COMMIT_HEADERS, commit_rows(report["commit"])))
    if not args.no_write:
        commit_csv = [{"kind": "commit", **m} for m in (report.get("commit") or {}).get("medians", [])]
        write_csv(RESULTS / f"{STUDY}.csv", [{"kind": "aggregate", **r} for r in report["rows"]] + commit_csv)
        write_json(RESULTS / f"{STUDY}.json", report)
        plot(report["rows"], bandwidth)
        (DOCS / "bench-latency.md").write_text(render(report))
        logger.info(
            "wrote %s, %s and %s", RESULTS / f"{STUDY}.csv", RESULTS / f"{STUDY}.json", DOCS / "bench-latency.md"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

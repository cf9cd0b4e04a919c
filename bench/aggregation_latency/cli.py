"""Arguments of the aggregation-latency study, and one run: bandwidth, every (size, n) cell, then commit
latency; or ``--render-only``, the page and plots again from the saved JSON."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fedledger.bench.aggregation_latency as study
from fedledger.bench.aggregation_latency.measure import (
    CommitPlan,
    Grid,
    commit_latencies,
    measure_size,
    memory_bandwidth,
)
from fedledger.bench.aggregation_latency.render import PAGE, STUDY, print_summary, write_outputs
from fedledger.bench.harness import (
    CORE_PACKAGES,
    FABRIC_PACKAGES,
    ROOT,
    add_end_load,
    add_report_options,
    comma_list,
    command_line,
    configure_logging,
    detector_version,
    finish_report,
    first_paragraph,
    machine_facts,
    render_report_again,
    study_parser,
)

logger = logging.getLogger("bench.aggregation_latency")

#: Defaults of a full run, and of ``--quick``.
FULL = {"counts": "10,30,100,300,1000", "sizes_mb": "0.1,1,10,50", "commit_backends": "embedded,fabric"}
QUICK = {"counts": "10,30,100", "sizes_mb": "0.1,1,10", "commit_backends": "embedded"}


def parser() -> argparse.ArgumentParser:
    p = study_parser(
        study.__name__, first_paragraph(study.__doc__), quick_help="small grid, embedded commit latency only"
    )
    p.add_argument("--counts", help=f"updates per round (default {FULL['counts']}; quick {QUICK['counts']})")
    p.add_argument("--sizes-mb", help=f"update sizes in MB (default {FULL['sizes_mb']}; quick {QUICK['sizes_mb']})")
    p.add_argument("--repeats", type=int, default=Grid.repeats, help="repeats per cell (medians are quoted)")
    p.add_argument("--pool-mb", type=float, default=Grid.pool_mb, help="distinct update bytes held per size")
    p.add_argument("--max-cell-gb", type=float, default=Grid.max_cell_gb, help="skip cells that read more than this")
    p.add_argument("--commit-backends", help="embedded,fabric (quick: embedded); 'none' to skip")
    p.add_argument("--commit-concurrency", default="1,10", help="concurrency levels for commit latency")
    p.add_argument("--commit-n", type=int, default=30, help="submissions per commit-latency run, at least")
    p.add_argument("--commit-repeats", type=int, default=3)
    p.add_argument("--commit-network-dir", type=Path, default=ROOT / "run" / "bench-latency")
    p.add_argument("--commit-port-offset", type=int, default=10000)
    add_report_options(p, STUDY, seed=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging()
    if args.render_only:
        return render_report_again(STUDY, PAGE, args.notes, lambda report: write_outputs(report, with_data=False))
    defaults = QUICK if args.quick else FULL
    counts = [int(x) for x in comma_list(args.counts or defaults["counts"], float)]
    sizes = comma_list(args.sizes_mb or defaults["sizes_mb"], float)
    commit_backends = args.commit_backends or defaults["commit_backends"]
    grid = Grid(repeats=args.repeats, pool_mb=args.pool_mb, max_cell_gb=args.max_cell_gb)
    plan = CommitPlan(
        backends=[] if commit_backends == "none" else comma_list(commit_backends, str.strip),
        concurrency=comma_list(args.commit_concurrency, int),
        n=args.commit_n,
        repeats=args.commit_repeats,
        network_dir=args.commit_network_dir,
        port_offset=args.commit_port_offset,
        seed=args.seed,
    )

    report: dict[str, Any] = {
        "command": command_line(),
        "machine": machine_facts((*CORE_PACKAGES, *FABRIC_PACKAGES), fabric_peer="fabric" in plan.backends),
        "counts": counts,
        "sizes_mb": sizes,
        "repeats": grid.repeats,
        "pool_mb": grid.pool_mb,
        "detector_version": detector_version(),
    }
    started = time.monotonic()
    report["bandwidth"] = memory_bandwidth()
    bandwidth = max(report["bandwidth"]["read_gbps"], report["bandwidth"]["copy_gbps"])
    report["bandwidth_used"] = bandwidth
    logger.info("memory bandwidth: %s", report["bandwidth"])
    report["rows"] = [row for size in sizes for row in measure_size(size, counts, grid, bandwidth)]
    report["aggregation_s"] = round(time.monotonic() - started, 1)
    if plan.backends:
        report["commit"] = commit_latencies(plan)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    add_end_load(report["machine"])
    return finish_report(
        report, STUDY, args.notes, summary=print_summary, write=None if args.no_write else write_outputs
    )

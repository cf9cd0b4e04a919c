"""Arguments of the aggregate-check study, and one run: the embedded ledger, then a Fabric network of its own
serving the study's contract; or ``--render-only``, the page again from the saved JSON."""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import fedledger.bench.aggregate_check as study
from fedledger.bench.aggregate_check.measure import (
    CheckBench,
    bench_ledger,
    in_process,
    lora_shapes,
    make_updates,
    median_rows,
)
from fedledger.bench.aggregate_check.render import PAGE, STUDY, print_summary, render_markdown, write_outputs
from fedledger.bench.harness import (
    CORE_PACKAGES,
    FABRIC_PACKAGES,
    ROOT,
    add_end_load,
    comma_list,
    command_line,
    configure_logging,
    fill_defaults,
    finish_report,
    first_paragraph,
    machine_facts,
    notes_path,
    render_report_again,
    study_parser,
)
from fedledger.bench.ledgers import LedgerUnderTest, bench_network, chosen_backends
from fedledger.sdk.aggregate import DEFAULT_MAX_PROPOSAL_BYTES

logger = logging.getLogger("bench.aggregate_check")

NOTES = notes_path(STUDY)
FULL = {"sizes": "10,100", "repeats": 3, "backends": "embedded,fabric"}
QUICK = {"sizes": "10,100", "repeats": 1, "backends": "embedded"}
#: The served contract on the study's own Fabric network.
CONTRACT = "fedledger.bench.aggregate_check.baseline:BaselineContract"


def parser() -> argparse.ArgumentParser:
    p = study_parser(study.__name__, first_paragraph(study.__doc__), quick_help=f"short run: {QUICK} unless given")
    p.add_argument("--sizes", help=f"updates per round, comma-separated (default {FULL['sizes']})")
    p.add_argument("--update-mb", type=float, default=1.0, help="MiB of float32 per update (default 1)")
    p.add_argument("--repeats", type=int, help=f"timed commits per mode and size (default {FULL['repeats']})")
    p.add_argument("--backends", help=f"embedded, fabric, or both (default {FULL['backends']})")
    p.add_argument(
        "--budget-mb", type=float, default=DEFAULT_MAX_PROPOSAL_BYTES / 2**20, help="transient MiB per proposal"
    )
    p.add_argument("--workers", type=int, default=10, help="concurrent SubmitUpdate clients while rounds fill")
    p.add_argument("--network-dir", type=Path, default=ROOT / "run" / "bench-aggregate-check")
    p.add_argument("--port-offset", type=int, default=30000, help="FEDLEDGER_PORT_OFFSET of its own network")
    p.add_argument("--keep-network", action="store_true", help="leave the study's network up at the end")
    p.add_argument("--no-write", action="store_true", help="print only; do not overwrite results and docs")
    p.add_argument("--notes", type=Path, default=NOTES, help="markdown put in the doc as its analysis section")
    p.add_argument("--render-only", action="store_true", help=f"only rewrite the doc from {STUDY}.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    fill_defaults(args, QUICK, FULL)
    configure_logging(verbose=args.verbose)
    if args.render_only:
        return render_report_again(STUDY, PAGE, args.notes, lambda report: PAGE.write_text(render_markdown(report)))
    sizes = sorted(comma_list(args.sizes, int))
    if not sizes or min(sizes) < 1 or args.repeats < 1:
        p.error("--sizes must list positive integers and --repeats must be >= 1")
    backends = chosen_backends(p, args.backends)
    shapes = lora_shapes(args.update_mb)
    budget = int(args.budget_mb * 2**20)
    rng = np.random.default_rng(args.seed)
    updates = make_updates(shapes, max(sizes), rng)
    report: dict[str, Any] = {
        "command": command_line(),
        "machine": machine_facts((*CORE_PACKAGES, *FABRIC_PACKAGES), fabric_peer="fabric" in backends),
        "update_mb": args.update_mb,
        "elements": sum(a * b for a, b in shapes.values()),
        "chunk_elements": None,
        "budget_mib": round(budget / 2**20, 1),
        "repeats": args.repeats,
        "sizes": sizes,
        "runs": [],
        "medians": [],
        "in_process": in_process(sizes, updates, shapes),
        "errors": [],
    }
    started = time.monotonic()
    runs = []
    if "embedded" in backends:
        embedded = LedgerUnderTest.embedded(prefix="fedledger-bench-aggcheck-")
        try:
            bench = CheckBench(embedded, shapes, budget=budget, workers=args.workers)
            report["chunk_elements"] = bench.rules.aggregate_chunk_elements
            runs += bench_ledger(bench, sizes, args.repeats, updates, report)
        finally:
            embedded.close()
    if "fabric" in backends:
        os.environ["FEDLEDGER_CONTRACT"] = CONTRACT  # deploy-cc.sh serves it on the study's own network
        try:
            with bench_network(args.network_dir, args.port_offset, "default", args.keep_network) as network_dir:
                fabric = LedgerUnderTest.fabric(network_dir, network_dir / "bench-identities")
                try:
                    bench = CheckBench(fabric, shapes, budget=budget, workers=args.workers)
                    report["chunk_elements"] = bench.rules.aggregate_chunk_elements
                    runs += bench_ledger(bench, sizes, args.repeats, updates, report)
                finally:
                    fabric.close()
        except Exception as exc:  # reported beside the embedded numbers
            logger.exception("Fabric part failed")
            report["errors"].append(f"fabric: {type(exc).__name__}: {exc}"[:500])
        finally:
            os.environ.pop("FEDLEDGER_CONTRACT", None)
    report["medians"] = median_rows(runs)
    add_end_load(report["machine"])
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    return finish_report(
        report, STUDY, args.notes, summary=print_summary, write=None if args.no_write else write_outputs
    )

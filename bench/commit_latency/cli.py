"""Arguments of the commit-latency study, and one run: embedded ledger, then one fresh Fabric network per
BatchTimeout; or ``--render-only``, the page again from the saved JSON."""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import fedledger.bench.commit_latency as study
from fedledger.bench.commit_latency.measure import (
    SubmitBench,
    bench_ledger,
    contract_compute_profile,
    lone_breakdown,
    plan_cells,
)
from fedledger.bench.commit_latency.probe import FabricProbe
from fedledger.bench.commit_latency.render import PAGE, STUDY, print_summary, render_markdown, write_outputs
from fedledger.bench.harness import (
    CORE_PACKAGES,
    FABRIC_PACKAGES,
    ROOT,
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
from fedledger.bench.ledgers import (
    LedgerUnderTest,
    bench_network,
    chosen_backends,
    configured_batch_timeout,
    make_update,
)

logger = logging.getLogger("bench.commit_latency")

NOTES = notes_path(STUDY)
#: Defaults of a full run, and of ``--quick`` (a few minutes: one run per cell, one network).
FULL = {"concurrency": "1,10,50", "repeats": 3, "min_n": 60, "breakdown": 20, "batch_timeouts": "default,50ms,20ms"}
QUICK = {"concurrency": "1,10", "repeats": 1, "min_n": 20, "breakdown": 5, "batch_timeouts": "default"}


def parser() -> argparse.ArgumentParser:
    p = study_parser(study.__name__, first_paragraph(study.__doc__), quick_help=f"short run: {QUICK} unless given")
    p.add_argument("--concurrency", help=f"comma-separated concurrency levels (default {FULL['concurrency']})")
    p.add_argument("--repeats", type=int, help=f"runs per cell, medians are quoted (default {FULL['repeats']})")
    p.add_argument("--min-n", type=int, help=f"submissions per run, at least (default {FULL['min_n']})")
    p.add_argument("--per-client", type=int, default=4, help="submissions per run = max(min-n, per-client * C)")
    p.add_argument(
        "--breakdown", type=int, help=f"lone Fabric transactions timed step by step (default {FULL['breakdown']})"
    )
    p.add_argument("--backends", default="embedded,fabric", help="embedded, fabric, or both (comma-separated)")
    p.add_argument(
        "--batch-timeouts",
        help="orderer BatchTimeout of the benchmark's own network, one fresh network each; 'default' = the "
        f"repository's setting (network/lib.sh); the others show what a shorter timeout would give "
        f"(default {FULL['batch_timeouts']})",
    )
    p.add_argument("--fabric-network-dir", type=Path, help="use this running network as is (never brought up or down)")
    p.add_argument(
        "--network-dir", type=Path, default=ROOT / "run" / "bench-network", help="run folder of its own network"
    )
    p.add_argument("--port-offset", type=int, default=10000, help="FEDLEDGER_PORT_OFFSET of its own network")
    p.add_argument("--keep-network", action="store_true", help="leave the benchmark's network up at the end")
    p.add_argument("--no-write", action="store_true", help="print only; do not overwrite results and docs")
    p.add_argument("--notes", type=Path, default=NOTES, help="markdown put in the doc as its analysis section")
    p.add_argument(
        "--render-only",
        action="store_true",
        help=f"only rewrite the doc from {STUDY}.json in the results folder (e.g. after editing the notes)",
    )
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

    concurrency = comma_list(args.concurrency, int)
    if not concurrency or min(concurrency) < 1 or args.repeats < 1:
        p.error("--concurrency must list positive integers and --repeats must be >= 1")
    backends = chosen_backends(p, args.backends)
    plan = plan_cells(concurrency, args.min_n, args.per_client)
    trainers = max([n for _c, n in plan] + [args.breakdown, 10])
    batch_timeouts = comma_list(args.batch_timeouts, str.strip)
    rng = np.random.default_rng(args.seed)
    report: dict[str, Any] = {
        "command": command_line(),
        "machine": machine_facts((*CORE_PACKAGES, *FABRIC_PACKAGES), fabric_peer="fabric" in backends),
        "update_bytes": len(make_update(rng)),
        "repeats": args.repeats,
        "plan": plan,
        "trainers": trainers,
        "batch_timeouts": [] if args.fabric_network_dir else batch_timeouts,
        "runs": [],
        "medians": [],
        "breakdown": {},
        "profile": {},
        "errors": [],
        "contract_compute": {},
        "networks": [],
    }
    logger.info("plan (concurrency, n per run): %s; %d runs each; %d trainers per ledger", plan, args.repeats, trainers)
    started = time.monotonic()

    if "embedded" in backends:
        embedded = LedgerUnderTest.embedded()
        try:
            bench_ledger(SubmitBench(embedded, trainers, max(concurrency)), plan, args.repeats, rng, None, report)
        finally:
            embedded.close()

    if "fabric" in backends:
        report["contract_compute"] = contract_compute_profile()
        targets: list[contextlib.AbstractContextManager[Path]] = []
        if args.fabric_network_dir:
            targets.append(contextlib.nullcontext(args.fabric_network_dir))
        else:
            for bt in batch_timeouts:
                targets.append(bench_network(args.network_dir, args.port_offset, bt, args.keep_network))
        for target in targets:
            with target as network_dir:
                name = f"fabric (BatchTimeout {configured_batch_timeout(network_dir)})"
                report["networks"].append(name)
                # New trainer identities are issued from the org CAs into the network folder.
                fabric = LedgerUnderTest.fabric(network_dir, network_dir / "bench-identities", name=name)
                try:
                    bench = SubmitBench(fabric, trainers, max(concurrency))
                    bench_ledger(bench, plan, args.repeats, rng, FabricProbe(network_dir), report)
                    rows = lone_breakdown(bench, args.breakdown, rng) if args.breakdown else []
                    if rows:
                        report["breakdown"][name] = {
                            "n": len(rows),
                            **{k: statistics.median(r[k] for r in rows) for k in rows[0]},
                        }
                finally:
                    fabric.close()

    report["elapsed_s"] = round(time.monotonic() - started, 1)
    return finish_report(
        report, STUDY, args.notes, summary=print_summary, write=None if args.no_write else write_outputs
    )

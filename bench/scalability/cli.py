"""Arguments of the scalability study, and one run: the embedded sweep, then the Fabric sweep on a network of
its own, then the detector alone; or ``--render-only``, the page and plots again from the saved JSON."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import fedledger.bench.scalability as study
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
from fedledger.bench.ledgers import LedgerUnderTest, bench_network, chosen_backends
from fedledger.bench.scalability.fits import extrapolate
from fedledger.bench.scalability.measure import ScaleLedger, Settings, detector_at_scale, make_updates, sweep
from fedledger.bench.scalability.render import PAGE, STUDY, print_summary, write_outputs

SIZES = {"full": "10,30,100,300,1000,3000,10000", "quick": "10,30,100"}
DETECTOR_SIZES = {"full": "1000,3000,10000", "quick": "1000"}


def parser() -> argparse.ArgumentParser:
    p = study_parser(study.__name__, first_paragraph(study.__doc__), quick_help=f"N = {SIZES['quick']} (a few minutes)")
    p.add_argument("--sizes", help=f"comma-separated round sizes (default {SIZES['full']})")
    p.add_argument("--embedded-sizes", help="round sizes on the embedded ledger (default: --sizes)")
    p.add_argument("--backends", default="embedded,fabric", help="embedded, fabric, or both")
    p.add_argument("--workers", type=int, default=Settings.workers, help="client threads for register and submit")
    p.add_argument(
        "--malicious", type=float, default=Settings.malicious, help="fraction of sign-flipped updates per round"
    )
    p.add_argument("--step-limit", type=float, default=Settings.step_limit, help="seconds any one step may take")
    p.add_argument("--time-limit", type=float, default=3000.0, help="seconds for the whole run")
    p.add_argument("--network-dir", type=Path, default=ROOT / "run" / "bench-scalability")
    p.add_argument(
        "--detector-sizes",
        help=f"round sizes for the in-process detector alone (default {DETECTOR_SIZES['full']}; quick "
        f"{DETECTOR_SIZES['quick']}; '' to skip)",
    )
    p.add_argument("--port-offset", type=int, default=20000)
    p.add_argument("--keep-network", action="store_true", help="leave the network up at the end")
    add_report_options(p, STUDY, seed=Settings.seed)
    return p


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit, so that the ``finally`` blocks take the network down."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    configure_logging()
    if args.render_only:
        return render_report_again(
            STUDY,
            PAGE,
            args.notes,
            lambda report: write_outputs({**report, "fits": extrapolate(report["rows"])}, with_csv=False),
        )
    mode = "quick" if args.quick else "full"
    round_sizes = comma_list(args.sizes or SIZES[mode], int)
    embedded_sizes = comma_list(args.embedded_sizes, int) if args.embedded_sizes else round_sizes
    detector_sizes = comma_list(DETECTOR_SIZES[mode] if args.detector_sizes is None else args.detector_sizes, int)
    backends = chosen_backends(p, args.backends)
    settings = Settings(workers=args.workers, malicious=args.malicious, step_limit=args.step_limit, seed=args.seed)
    deadline = time.monotonic() + args.time_limit
    report: dict[str, Any] = {
        "command": command_line(),
        "machine": machine_facts((*CORE_PACKAGES, *FABRIC_PACKAGES), fabric_peer="fabric" in backends),
        "sizes": round_sizes,
        "embedded_sizes": embedded_sizes,
        "workers": settings.workers,
        "malicious": settings.malicious,
        "step_limit": settings.step_limit,
        "update_bytes": len(make_updates(1, 0.0, np.random.default_rng(0))[0][0]),
        "detector_version": detector_version(),
        "rows": [],
    }
    started = time.monotonic()
    with sigterm_as_exit():
        if "embedded" in backends:
            embedded = LedgerUnderTest.embedded(prefix="fedledger-scale-")
            try:
                report["rows"] += sweep(
                    ScaleLedger(embedded, settings.step_limit, max(embedded_sizes)), embedded_sizes, settings, deadline
                )
            finally:
                embedded.close()
        if "fabric" in backends:
            report["network"] = f"{args.network_dir}, port offset {args.port_offset}"
            with bench_network(args.network_dir, args.port_offset, "default", args.keep_network) as network_dir:
                # Thousands of issued identities: on tmpfs when there is one, so that taking the network down does
                # not spend minutes deleting them from disk (issuing them is not what is measured).
                shm = Path("/dev/shm")
                issued = tempfile.TemporaryDirectory(prefix="fedledger-ids-", dir=shm if shm.is_dir() else None)
                fabric = LedgerUnderTest.fabric(network_dir, issued)
                try:
                    report["rows"] += sweep(
                        ScaleLedger(fabric, settings.step_limit, max(round_sizes)), round_sizes, settings, deadline
                    )
                finally:
                    fabric.close()
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    add_end_load(report["machine"])
    report["fits"] = extrapolate(report["rows"])
    if detector_sizes:
        report["detector_scale"] = detector_at_scale(detector_sizes, settings.seed, settings.step_limit)
    return finish_report(
        report, STUDY, args.notes, summary=print_summary, write=None if args.no_write else write_outputs
    )

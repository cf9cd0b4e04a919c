"""``fedledger report <run dir>``: one self-contained HTML page (plots inlined) for any run, demo included."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedledger.cli.output import Outcome, add_json_option, error_summary

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="write a self-contained HTML report of a run (accuracy, anomaly scores, trust, rewards, latency)",
        description=__doc__,
    )
    parser.add_argument("run_dir", type=Path, help="run folder (e.g. demo-out: holds model/ and/or consortium/)")
    parser.add_argument("-o", "--output", type=Path, help="HTML file to write (default: <run dir>/report.html)")
    parser.add_argument(
        "--network-dir", type=Path, help="for a run on Fabric: the running network's folder (e.g. run/network)"
    )
    add_json_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> Outcome:
    # RunDirError is a ValueError: main() reports it as a usage error (exit 2).
    from fedledger.report import LedgerUnreachableError, write_report

    try:
        target = write_report(args.run_dir, args.output, network_dir=args.network_dir)
    except LedgerUnreachableError as exc:
        print(f"fedledger: error: {exc}", file=sys.stderr)
        return Outcome(EXIT_FAILED, error_summary("report", str(exc), EXIT_FAILED))
    print(f"report: {target}")
    return Outcome(EXIT_OK, {"report": str(target), "run_dir": str(args.run_dir)})

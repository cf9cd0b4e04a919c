"""Arguments of the shares study, and one run; or ``--render-only``, the page again from the saved JSON."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import fedledger.bench.shares as study
from fedledger.bench.harness import (
    CORE_PACKAGES,
    add_end_load,
    add_report_options,
    comma_list,
    command_line,
    configure_logging,
    fill_defaults,
    finish_report,
    first_paragraph,
    machine_facts,
    render_report_again,
    study_parser,
)
from fedledger.bench.shares.measure import run_study
from fedledger.bench.shares.render import PAGE, STUDY, print_summary, render_markdown, write_outputs

FULL = {"dims": "100000,1000000", "orgs": "2,3", "members": "10,50", "repeats": 3}
QUICK = {"dims": "100000,1000000", "orgs": "2,3", "members": "10", "repeats": 1}


def parser() -> argparse.ArgumentParser:
    p = study_parser(study.__name__, first_paragraph(study.__doc__), quick_help=f"short run: {QUICK} unless given")
    p.add_argument("--dims", help=f"float32 values per update, comma-separated (default {FULL['dims']})")
    p.add_argument("--orgs", help=f"organisations K, comma-separated, each >= 2 (default {FULL['orgs']})")
    p.add_argument("--members", help=f"members per round, comma-separated (default {FULL['members']})")
    p.add_argument("--repeats", type=int, help=f"timed sums per cell (default {FULL['repeats']})")
    add_report_options(p, STUDY, seed=0)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    fill_defaults(args, QUICK, FULL)
    configure_logging(verbose=args.verbose, quiet=())
    if args.render_only:
        return render_report_again(STUDY, PAGE, args.notes, lambda report: PAGE.write_text(render_markdown(report)))
    dims, orgs, members = (sorted(comma_list(v, int)) for v in (args.dims, args.orgs, args.members))
    if not dims or min(dims) < 64 or not orgs or min(orgs) < 2 or not members or min(members) < 2:
        p.error("--dims must be >= 64, --orgs >= 2 and --members >= 2")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    started = time.monotonic()
    report = {
        "command": command_line(),
        "machine": machine_facts(CORE_PACKAGES),
        "dims": dims,
        "orgs": orgs,
        "members": members,
        "repeats": args.repeats,
        **run_study(dims=dims, orgs=orgs, members=members, repeats=args.repeats, seed=args.seed),
    }
    add_end_load(report["machine"])
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    return finish_report(
        report, STUDY, args.notes, summary=print_summary, write=None if args.no_write else write_outputs
    )

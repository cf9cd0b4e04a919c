"""The trust study's command line: run the federation on the embedded ledger, write the results, render the page."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fedledger.bench import trust as study
from fedledger.bench.harness import (
    CORE_PACKAGES,
    ML_PACKAGES,
    RESULTS,
    command_line,
    configure_logging,
    current_command,
    machine_facts,
    print_report,
    read_results,
    save_results,
    study_parser,
)
from fedledger.bench.trust.measure import run_study
from fedledger.bench.trust.render import STUDY, findings, plot, table, write_docs
from fedledger.experiments.run_folder import refuse_foreign

MODULE = "fedledger.bench.trust"


def parser() -> argparse.ArgumentParser:
    """The study's arguments (``--help`` prints the study's description)."""
    p = study_parser(MODULE, study.__doc__, quick_help="6 rounds, 1 local epoch (a few minutes)")
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 8, quick 6)")
    p.add_argument("--turn", type=int, default=3, help="lab-h turns malicious after this round")
    p.add_argument("--epochs", type=int, default=None, help="local epochs (default 2, quick 1)")
    p.add_argument("--model", default="minilm", help="'minilm' or 'tiny-bert' (random, fast)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS / "trust-run", help="ledger and store folder")
    p.add_argument("--render-only", action="store_true", help="re-render plots and docs from bench/results/trust.json")
    return p


def render_stored() -> int:
    """Plots and the docs page again from ``bench/results/trust.json``."""
    result = read_results(STUDY)
    write_docs(result, result["machine"], current_command(result["command"]), plot(result, result["rules"]))
    print(findings(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the study (or only renders it again) and prints the per-participant table and the findings."""
    args = parser().parse_args(argv)
    if args.render_only:
        return render_stored()
    configure_logging(quiet=(), brief=True)
    try:
        refuse_foreign(args.out)  # before anything is trained: a folder of the user's is never replaced
    except FileExistsError as exc:
        print(f"{MODULE}: error: {exc}", file=sys.stderr)
        return 2
    machine = machine_facts((*CORE_PACKAGES, *ML_PACKAGES))
    command = command_line()
    result = run_study(
        out=args.out,
        rounds=args.rounds or (6 if args.quick else 8),
        turn=args.turn,
        epochs=args.epochs or (1 if args.quick else 2),
        model_name=args.model,
        seed=args.seed,
    )
    result["machine"] = machine
    result["command"] = command
    save_results(STUDY, result["records"], result)
    write_docs(result, machine, command, plot(result, result["rules"]))
    print_report("Bench 6 — trust", command=command, machine=machine, table=table(result))
    print()
    print(findings(result))
    return 0

"""The privacy-utility study's command line: run every (recipe, ε, seed), write the results, render the page."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence

from fedledger.bench import privacy_utility as study
from fedledger.bench.harness import (
    CORE_PACKAGES,
    ML_PACKAGES,
    add_end_load,
    comma_list,
    command_line,
    configure_logging,
    current_command,
    machine_facts,
    print_report,
    read_results,
    save_results,
    study_parser,
)
from fedledger.bench.privacy_utility.measure import (
    STUDY,
    demo_recipe,
    epsilon_label,
    gradient_anatomy,
    jobs,
    run_all,
    summarise,
)
from fedledger.bench.privacy_utility.render import plot, summary_table, verdict, write_docs

MODULE = "fedledger.bench.privacy_utility"


def parser() -> argparse.ArgumentParser:
    """The study's arguments (``--help`` prints the study's description)."""
    p = study_parser(MODULE, study.__doc__, quick_help="ε ∈ {8, ∞}, one seed (a few minutes)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration (full mode)")
    p.add_argument("--epsilons", default="1,3,8,inf", help="comma-separated ε values; inf = non-private")
    p.add_argument("--no-previous", action="store_true", help="skip the previous demo recipe at ε = 8")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (one torch thread each)")
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--render-only", action="store_true", help="re-render plots and docs from the JSON")
    return p


def render_stored() -> int:
    """Plots and the docs page again from ``bench/results/privacy_utility.json``."""
    payload = read_results(STUDY)
    for run in payload["runs"]:
        run["epsilon"] = float(run["epsilon"])
    plots = plot(payload["runs"], payload["summary"])
    write_docs(payload, payload["machine"], current_command(payload["command"]), plots)
    print("Target:", verdict(payload["summary"])[1])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the study (or only renders it again) and prints the medians and the target's verdict."""
    args = parser().parse_args(argv)
    if args.render_only:
        return render_stored()
    configure_logging(quiet=(), brief=True)
    epsilons = [8.0, math.inf] if args.quick else comma_list(args.epsilons, float)
    seeds = [0] if args.quick else list(range(args.seeds))
    todo = jobs(
        epsilons,
        seeds,
        members=args.members,
        rounds=args.rounds,
        previous=not args.quick and not args.no_previous,
        threads=max(1, (os.cpu_count() or 1) // max(1, args.jobs)),
    )
    machine = machine_facts((*CORE_PACKAGES, *ML_PACKAGES))
    command = command_line()
    runs = run_all(todo, workers=args.jobs)
    add_end_load(machine)
    summary = summarise(runs)
    payload = {
        "anatomy": gradient_anatomy(),
        "summary": summary,
        "runs": runs,
        "setup": {
            "members": args.members,
            "rounds": args.rounds,
            "seeds": seeds,
            "epsilons": [epsilon_label(e) for e in epsilons],
        },
        **demo_recipe(args.rounds),
        "machine": machine,
        "command": command,
    }
    rows = [
        {"recipe": r["recipe"], "epsilon": epsilon_label(r["epsilon"]), "seed": r["seed"], **per_round}
        for r in runs
        for per_round in r["rounds"]
    ]
    save_results(STUDY, rows, payload)
    write_docs(payload, machine, command, plot(runs, summary))
    print_report("Bench 2 — privacy-utility", command=command, machine=machine, table=summary_table(summary))
    print("\nTarget:", verdict(summary)[1])
    return 0

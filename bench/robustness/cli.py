"""The robustness study's command line: run the grid (or reuse stored cells), write results, render the page."""

from __future__ import annotations

import argparse
import logging
import shlex
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from typing import Any

from fedledger.bench import robustness as study
from fedledger.bench.harness import (
    BASELINE_PACKAGES,
    CORE_PACKAGES,
    ML_PACKAGES,
    RESULTS,
    add_end_load,
    command_line,
    configure_logging,
    current_command,
    machine_facts,
    markdown_table,
    print_report,
    read_results,
    save_results,
    study_parser,
    write_csv,
)
from fedledger.bench.robustness.grid import (
    ATTACKS,
    DEFENCES,
    FRACTIONS,
    HEADLINE,
    CellStore,
    Setup,
    detector_key,
    estimate_seconds,
    work_units,
)
from fedledger.bench.robustness.measure import run_honest_dp, run_seed
from fedledger.bench.robustness.render import write_page
from fedledger.bench.robustness.summary import (
    HONEST_DP_EPSILON,
    accuracy_table,
    discrimination_table,
    honest_dp_target,
    per_round,
    summarise,
    targets,
)

MODULE = "fedledger.bench.robustness"
STORE = "robustness_cells.jsonl"
QUICK_ROUNDS = 3


def parser() -> argparse.ArgumentParser:
    """The study's arguments (``--help`` prints the study's description)."""
    p = study_parser(
        MODULE, study.__doc__, quick_help="20 %% only, 1 seed, 3 rounds, every attack and defence: under 10 minutes"
    )
    p.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (quick: 0)")
    p.add_argument("--rounds", type=int, help=f"default {Setup.rounds} (quick: {QUICK_ROUNDS})")
    p.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="parallel processes (default 2); each seed's grid is split into --jobs parts by attack",
    )
    p.add_argument("--attacks", nargs="+", choices=ATTACKS, default=list(ATTACKS))
    p.add_argument("--defences", nargs="+", choices=DEFENCES, default=list(DEFENCES))
    p.add_argument(
        "--fractions", type=float, nargs="+", help=f"default {' '.join(map(str, FRACTIONS))} (quick: {HEADLINE})"
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help=f"reuse cells stored in bench/results/{STORE} by an earlier run with the same settings "
        "(fedledger cells only if the detector's source is unchanged)",
    )
    p.add_argument(
        "--extra-seeds",
        type=int,
        nargs="*",
        default=[],
        help="seeds whose stored cells are shown in a separate detection table (e.g. seeds where the model did "
        "not learn within the rounds, kept out of the headline medians)",
    )
    p.add_argument(
        "--detector-source",
        help="with --render-only: show fedledger cells of this detector version (the hash stored with each cell) "
        "instead of the stored run's",
    )
    p.add_argument(
        "--honest-dp-epsilon",
        type=float,
        default=HONEST_DP_EPSILON,
        help="after the grid, every seed runs once more with honest members only, all training with DP-SGD at "
        "this epsilon (over the rounds), to count the detector's false rejections (default %(default)g; 0: skip)",
    )
    p.add_argument(
        "--honest-dp-only",
        action="store_true",
        help="compute only the honest DP-SGD runs, for the stored run's seeds and settings, add them to "
        "bench/results/robustness.json and render the page again",
    )
    p.add_argument(
        "--render-only",
        action="store_true",
        help="compute nothing: plots and docs page from bench/results/robustness.json (the stored run's settings, "
        "machine and command) and the extra seeds' stored cells",
    )
    return p


def report(
    rows: Sequence[dict[str, Any]],
    setup: Setup,
    *,
    command: str,
    machine: dict[str, str],
    honest_dp: Sequence[dict[str, Any]] = (),
) -> list[tuple[str, bool, str]]:
    """Prints the discrimination table, the side-by-side accuracies at the headline fraction and the targets;
    returns the targets (statement, met, numbers)."""
    headers, table = discrimination_table(rows, setup)
    text = markdown_table(headers, table)
    headers, table = accuracy_table(rows, setup, HEADLINE)
    text += f"\n\nFinal accuracy at {int(HEADLINE * 100)} % malicious (mean ± std over seeds):\n\n"
    text += markdown_table(headers, table)
    print_report(
        "Robustness: undefended cost per attack, then every defence", command=command, machine=machine, table=text
    )
    met = targets(rows, setup) + ([honest_dp_target(honest_dp)] if honest_dp else [])
    for statement, ok, numbers in met:
        print(f"  {'MET' if ok else 'MISSED'}: {statement}: {numbers}")
    return met


def honest_dp_runs(setup: Setup, seeds: Sequence[int], epsilon: float, jobs: int) -> list[dict[str, Any]]:
    """The honest DP-SGD run of every seed (in parallel processes), or none when ``epsilon`` is 0."""
    if epsilon <= 0:
        return []
    if jobs > 1 and len(seeds) > 1:
        with ProcessPoolExecutor(max_workers=min(jobs, len(seeds))) as pool:
            return list(pool.map(run_honest_dp, [setup] * len(seeds), seeds, [epsilon] * len(seeds)))
    return [run_honest_dp(setup, seed, epsilon) for seed in seeds]


def render_stored(args: argparse.Namespace) -> int:
    """Plots and the docs page again from the stored JSON (its cells, settings, machine and command)."""
    suffix = "_quick" if args.quick else ""
    payload = read_results(f"robustness{suffix}")
    setup = Setup.from_record(payload["setup"])
    detector = args.detector_source or payload["detector_source"]
    command = current_command(payload["command"])
    extra_seeds = payload.get("extra_seeds")
    if extra_seeds is None:  # runs before the JSON recorded them: the stored command says
        extra_seeds = parser().parse_args(shlex.split(command)[3:]).extra_seeds
    store = CellStore(RESULTS / STORE)
    cells = (
        payload["cells"] if detector == payload["detector_source"] else store.select(setup, payload["seeds"], detector)
    )
    rows = summarise(cells)
    if args.honest_dp_only:
        payload["honest_dp"] = honest_dp_runs(setup, payload["seeds"], args.honest_dp_epsilon, args.jobs)
        save_results(f"robustness{suffix}", rows, payload)
    honest_dp = payload.get("honest_dp", [])
    met = report(rows, setup, command=command, machine=payload["machine"], honest_dp=honest_dp)
    if args.quick:
        return 0
    path = write_page(
        setup=setup,
        seeds=payload["seeds"],
        cells=cells,
        extra=store.select(setup, extra_seeds, detector),
        rows=rows,
        met=met,
        detector=detector,
        command=command,
        machine=payload["machine"],
    )
    print(f"\nwrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the grid (seeds in parallel processes), writes the results, prints the table, renders the page."""
    args = parser().parse_args(argv)
    configure_logging(logging.WARNING, quiet=(), brief=True)
    if args.render_only or args.honest_dp_only:
        return render_stored(args)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    setup = Setup(
        rounds=args.rounds or (QUICK_ROUNDS if args.quick else Setup.rounds),
        attacks=tuple(args.attacks),
        defences=tuple(args.defences),
        fractions=tuple(args.fractions or ([HEADLINE] if args.quick else FRACTIONS)),
    )
    machine = machine_facts((*CORE_PACKAGES, *ML_PACKAGES, *BASELINE_PACKAGES))
    detector = detector_key()
    store_path = RESULTS / STORE
    RESULTS.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    computed = [*seeds, *(s for s in args.extra_seeds if s not in seeds)]
    units = work_units(setup, computed, parts=max(1, args.jobs))
    cells_total = sum(len(cells) for _, cells in units)
    estimate = sum(estimate_seconds(setup, cells) for _, cells in units)
    print(
        f"{cells_total} cells in {len(units)} parts ({len(computed)} seeds x {len(units) // max(1, len(computed))}) "
        f"on {args.jobs} processes; estimated {estimate / 60:.0f} min of compute, about "
        f"{estimate / 60 / max(1, min(args.jobs, len(units))):.0f} min wall (before --reuse skips stored cells)",
        flush=True,
    )
    if args.jobs > 1 and len(units) > 1:
        with ProcessPoolExecutor(max_workers=min(args.jobs, len(units))) as pool:
            futures = [
                pool.submit(run_seed, setup, seed, str(store_path), args.reuse, detector, cells)
                for seed, cells in units
            ]
            runs = [f.result() for f in futures]
    else:
        runs = [run_seed(setup, seed, str(store_path), args.reuse, detector, cells) for seed, cells in units]
    honest_dp = honest_dp_runs(setup, seeds, args.honest_dp_epsilon, args.jobs)
    wall = time.perf_counter() - start
    store = CellStore(store_path)
    cells = store.select(setup, seeds, detector)
    rows = summarise(cells)
    add_end_load(machine)
    # The command that computes these numbers from scratch (--reuse only changes where they come from).
    command = " ".join(w for w in command_line().split(" ") if w != "--reuse")
    suffix = "_quick" if args.quick else ""
    save_results(
        f"robustness{suffix}",
        rows,
        {
            "command": command,
            "machine": machine,
            "setup": asdict(setup),
            "seeds": seeds,
            "extra_seeds": args.extra_seeds,
            "detector_source": detector,
            "runs": runs,
            "honest_dp": honest_dp,
            "wall_seconds": wall,
            "summary": rows,
            "cells": cells,
        },
    )
    write_csv(RESULTS / f"robustness_rounds{suffix}.csv", per_round(cells))
    met = report(rows, setup, command=command, machine=machine, honest_dp=honest_dp)
    if args.quick:
        return 0
    path = write_page(
        setup=setup,
        seeds=seeds,
        cells=cells,
        extra=store.select(setup, args.extra_seeds, detector),
        rows=rows,
        met=met,
        detector=detector,
        command=command,
        machine=machine,
    )
    print(f"\nwrote {path}")
    return 0

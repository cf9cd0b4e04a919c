"""Arguments of the shares study, and one run; or ``--render-only``, the page again from the saved JSON."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import fedledger.bench.shares as study
from fedledger.bench.harness import (
    CORE_PACKAGES,
    FABRIC_PACKAGES,
    ML_PACKAGES,
    ROOT,
    add_end_load,
    add_report_options,
    comma_list,
    command_line,
    configure_logging,
    fill_defaults,
    finish_report,
    first_paragraph,
    machine_facts,
    notes_path,
    read_notes,
    read_results,
    render_report_again,
    study_parser,
)
from fedledger.bench.shares.leak import real_demo_updates, run_leak
from fedledger.bench.shares.measure import run_study
from fedledger.bench.shares.render import LEAK, PAGE, STUDY, print_summary, render_markdown, write_outputs
from fedledger.bench.shares.round import run_round_part

FULL = {
    "dims": "100000,1000000",
    "orgs": "2,3",
    "members": "10,50",
    "repeats": 3,
    "leak_trials": 10,
    "real_members": 5,
    "real_seeds": 4,
    "round_dims": "100000,1000000",
    "round_members": "10,50",
    "round_repeats": 3,
    "fabric_cells": "100000x10,1000000x10,100000x50",
}
QUICK = {
    "dims": "100000,1000000",
    "orgs": "2,3",
    "members": "10",
    "repeats": 1,
    "leak_trials": 5,
    "real_members": 5,
    "real_seeds": 1,
    "round_dims": "10000",
    "round_members": "5,10",
    "round_repeats": 1,
    "fabric_cells": "10000x4",
}
PARTS = ("timing", "leak", "round", "round-fabric")
#: What ``--parts`` runs unless told: round-fabric needs a running network.
DEFAULT_PARTS = ("timing", "leak", "round")
#: The network round-fabric measures unless ``--network-dir`` says otherwise (``make network-up``'s folder).
NETWORK_DIR = ROOT / "run" / "network"
#: The demo's DP-SGD budget (``fedledger demo``'s defaults): ε = 8 over 3 rounds.
DEMO_EPSILON, DEMO_ROUNDS = 8.0, 3


def parser() -> argparse.ArgumentParser:
    p = study_parser(study.__name__, first_paragraph(study.__doc__), quick_help=f"short run: {QUICK} unless given")
    p.add_argument("--dims", help=f"float32 values per update, comma-separated (default {FULL['dims']})")
    p.add_argument("--orgs", help=f"organisations K, comma-separated, each >= 2 (default {FULL['orgs']})")
    p.add_argument("--members", help=f"members per round, comma-separated (default {FULL['members']})")
    p.add_argument("--repeats", type=int, help=f"timed sums per cell (default {FULL['repeats']})")
    p.add_argument(
        "--parts",
        default=",".join(DEFAULT_PARTS),
        help="which parts to run, comma-separated: timing (the tables above Round time), round (Round time, shared vs "
        "plaintext, on the embedded ledger), round-fabric (the same on the running native Fabric network, members "
        "and organisations in parallel), leak (What leaks); a part "
        f"not run keeps its saved numbers (default {','.join(DEFAULT_PARTS)})",
    )
    p.add_argument(
        "--leak-trials", type=int, help=f"synthetic updates per What leaks case (default {FULL['leak_trials']})"
    )
    p.add_argument(
        "--real-members",
        type=int,
        help="members whose real DP-SGD demo updates What leaks trains (MiniLM, offline; 0: synthetic only; "
        f"default {FULL['real_members']})",
    )
    p.add_argument("--real-seeds", type=int, help=f"sketch seeds per real update (default {FULL['real_seeds']})")
    p.add_argument(
        "--round-dims", help=f"Round time: float32 values per update, comma-separated (default {FULL['round_dims']})"
    )
    p.add_argument(
        "--round-members", help=f"Round time: members per round, comma-separated (default {FULL['round_members']})"
    )
    p.add_argument(
        "--round-repeats", type=int, help=f"Round time: rounds per mode and cell (default {FULL['round_repeats']})"
    )
    p.add_argument(
        "--fabric-cells",
        help="Round time on Fabric: the (values per update)x(members) cells, comma-separated (default "
        f"{FULL['fabric_cells']}; repeats: --round-repeats)",
    )
    p.add_argument(
        "--network-dir",
        type=Path,
        default=NETWORK_DIR,
        help="round-fabric: the folder of a running network (network/network-up.sh or make network-up; default "
        "%(default)s); the study neither starts nor stops it",
    )
    add_report_options(p, STUDY, seed=0)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    fill_defaults(args, QUICK, FULL)
    configure_logging(verbose=args.verbose, quiet=())
    if args.render_only:
        return render_report_again(
            STUDY, PAGE, args.notes, lambda report: PAGE.write_text(render_markdown(_notes(report)))
        )
    parts = set(comma_list(args.parts, str))
    dims, orgs, members = (sorted(comma_list(v, int)) for v in (args.dims, args.orgs, args.members))
    if not parts or not parts <= set(PARTS):
        p.error(f"--parts takes {', '.join(PARTS)}")
    if not dims or min(dims) < 64 or not orgs or min(orgs) < 2 or not members or min(members) < 2:
        p.error("--dims must be >= 64, --orgs >= 2 and --members >= 2")
    round_dims, round_members = (sorted(comma_list(v, int)) for v in (args.round_dims, args.round_members))
    fabric_cells = comma_list(args.fabric_cells, _cell)
    if not round_dims or min(round_dims) < 64 or not round_members or min(round_members) < 4:
        p.error("--round-dims must be >= 64 and --round-members >= 4 (the detector's minimum)")
    if not fabric_cells or min(d for d, _ in fabric_cells) < 64 or min(n for _, n in fabric_cells) < 4:
        p.error("--fabric-cells takes DxN pairs, d >= 64 and N >= 4 (e.g. 100000x10)")
    if "round-fabric" in parts and not (args.network_dir / "network.json").is_file():
        p.error(f"round-fabric needs a running network in {args.network_dir} (network/network-up.sh)")
    if (
        args.round_repeats < 1
        or args.repeats < 1
        or args.leak_trials < 1
        or args.real_seeds < 1
        or args.real_members < 0
    ):
        p.error("--repeats, --round-repeats, --leak-trials and --real-seeds must be >= 1, --real-members >= 0")
    saved = _saved() if parts != set(PARTS) else {}
    if "timing" in parts:
        report = _timing(dims, orgs, members, args.repeats, args.seed)
        for part in ("leak", "round", "round_fabric"):
            if saved.get(part):
                report[part] = saved[part]
    elif saved:
        report = saved
    else:
        p.error(f"--parts {args.parts} needs a saved timing run ({STUDY}.json in the results folder); add timing")
    if "round" in parts:
        report["round"] = _round(round_dims, round_members, args.round_repeats, args.seed)
    if "round-fabric" in parts:
        report["round_fabric"] = _round_fabric(args.network_dir, fabric_cells, args.round_repeats, args.seed)
    if "leak" in parts:
        report["leak"] = _leak(args.leak_trials, args.real_members, args.real_seeds, args.seed)
    return finish_report(
        _notes(report), STUDY, args.notes, summary=print_summary, write=None if args.no_write else write_outputs
    )


def _notes(report: dict[str, Any]) -> dict[str, Any]:
    """The report with What leaks' notes (``bench/shares_leak_notes.md``) read again."""
    if report.get("leak"):
        report["leak"]["notes"] = read_notes(notes_path(LEAK))
    return report


def _saved() -> dict[str, Any]:
    try:
        return read_results(STUDY)
    except FileNotFoundError:
        return {}


def _measured(
    packages: Sequence[str], options: dict[str, Any], run: Callable[[], dict[str, Any]], *, fabric_peer: bool = False
) -> dict[str, Any]:
    """One part's report: its command, the machine (load at start and end), its options, ``run()``'s results and
    how long it took."""
    started = time.monotonic()
    report = {"command": command_line(), "machine": machine_facts(packages, fabric_peer=fabric_peer), **options}
    report.update(run())
    add_end_load(report["machine"])
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    return report


def _timing(dims: list[int], orgs: list[int], members: list[int], repeats: int, seed: int) -> dict[str, Any]:
    return _measured(
        CORE_PACKAGES,
        {"dims": dims, "orgs": orgs, "members": members, "repeats": repeats},
        lambda: run_study(dims=dims, orgs=orgs, members=members, repeats=repeats, seed=seed),
    )


def _round(dims: list[int], members: list[int], repeats: int, seed: int) -> dict[str, Any]:
    """Round time, shared vs plaintext, with its own command and machine."""
    return _measured(
        (*CORE_PACKAGES, "scipy"),
        {"dims": dims, "members": members, "repeats": repeats},
        lambda: run_round_part(dims=dims, members=members, repeats=repeats, seed=seed),
    )


def _cell(text: str) -> tuple[int, int]:
    """``100000x10`` -> (100000, 10); anything else -> (0, 0), which the checks refuse."""
    d, _, n = text.strip().partition("x")
    return (int(d), int(n)) if d.isdigit() and n.isdigit() else (0, 0)


def _round_fabric(network_dir: Path, cells: list[tuple[int, int]], repeats: int, seed: int) -> dict[str, Any]:
    """Round time on Fabric, with its own command and machine (and the Fabric peer's version)."""
    from fedledger.bench.shares.round_fabric import run_round_fabric_part

    def run() -> dict[str, Any]:
        return run_round_fabric_part(network_dir, cells=cells, repeats=repeats, seed=seed)

    options = {"cells": [list(c) for c in cells], "repeats": repeats}
    return _measured((*CORE_PACKAGES, *FABRIC_PACKAGES), options, run, fabric_peer=True)


def _leak(trials: int, real_members: int, real_seeds: int, seed: int) -> dict[str, Any]:
    """What leaks: real demo updates (if asked) and the synthetic cases, with their own command and machine."""

    def run() -> dict[str, Any]:
        real, kind = (
            real_demo_updates(real_members, epsilon=DEMO_EPSILON, rounds=DEMO_ROUNDS, seed=seed)
            if real_members
            else ([], "")
        )
        return run_leak(trials=trials, seed=seed, real=real, real_kind=kind, real_seeds=real_seeds)

    packages = (*CORE_PACKAGES, "scipy", *(ML_PACKAGES if real_members else ()))
    options = {"trials": trials, "real_members": real_members, "real_seeds": real_seeds}
    return _measured(packages, options, run)

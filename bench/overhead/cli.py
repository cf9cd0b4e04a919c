"""The overhead study's command line: run the modes over several repeats, publish after each, or re-render."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from fedledger.bench import overhead as study
from fedledger.bench.harness import (
    BASELINE_PACKAGES,
    CORE_PACKAGES,
    FABRIC_PACKAGES,
    ML_PACKAGES,
    RESULTS,
    ROOT,
    comma_list,
    command_line,
    configure_logging,
    current_command,
    machine_facts,
    read_results,
    study_parser,
)
from fedledger.bench.ml import offline
from fedledger.bench.overhead.measure import MODES, Run, Runner, Setup, measure, run_embedded, run_fabric, run_off
from fedledger.bench.overhead.render import STUDY, report, save, summarize, write_page

MODULE = "fedledger.bench.overhead"


def parser() -> argparse.ArgumentParser:
    """The study's arguments (``--help`` prints the study's description)."""
    p = study_parser(MODULE, study.__doc__, quick_help="tiny random BERT (a few minutes)")
    p.add_argument("--model", help="'minilm' (default) or 'tiny-bert' (default with --quick)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-length", type=int, default=64, help="tokens per record (the demo's 64)")
    p.add_argument("--repeats", type=int, default=5, help="repeats of each mode (medians are quoted)")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)}")
    p.add_argument("--network-dir", type=Path, default=ROOT / "run" / "bench-overhead")
    p.add_argument("--port-offset", type=int, default=30000)
    p.add_argument("--batch-timeout", default="default", help="orderer BatchTimeout ('default': network/lib.sh)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: steadier timings on a shared machine)"
    )
    p.add_argument(
        "--render-only", action="store_true", help="only rewrite table, plot and docs from bench/results/overhead.json"
    )
    p.add_argument("--no-write", action="store_true", help="print only; do not overwrite results and docs")
    return p


def describe(setup: Setup, *, batch_timeout: str, threads: int) -> str:
    """The set-up in one sentence (the page's results section starts with it)."""
    return (
        f"model {setup.model} + LoRA, breast-cancer Wisconsin as text (levels), {setup.members} members, Dirichlet "
        f"alpha={setup.alpha}, {setup.rounds} rounds, {setup.epochs} local epoch(s), batch {setup.batch_size}, "
        f"AdamW lr {setup.learning_rate}, max length {setup.max_length}, no DP, FedAvg, seed {setup.seed}; "
        f"Fabric BatchTimeout {batch_timeout}; torch threads {threads}"
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Offline models, and no library deprecation warnings between the progress bars."""
    offline()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        yield


def render_stored() -> int:
    """Tables, plot and the docs page again from ``bench/results/overhead.json`` (e.g. after editing the notes)."""
    saved = read_results(STUDY)
    runs = [Run(**run) for run in saved["runs"]]
    modes = saved.get("modes") or [m for m in MODES if any(r.mode == m for r in runs)]
    rows = summarize(runs, modes)
    command = current_command(saved["command"])
    text, status = saved["setup_text"], saved.get("status", "")
    report(rows, text, saved["machine"], command, status)
    write_page(runs, rows, setup_text=text, machine=saved["machine"], command=command, status=status)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs every mode ``--repeats`` times and publishes the results after each repeat (or only re-renders)."""
    p = parser()
    args = p.parse_args(argv)
    configure_logging(quiet=("fedledger", "flwr", "httpx"))
    if args.render_only:
        return render_stored()
    modes = comma_list(args.modes, str.strip)
    modes = ["off", *[m for m in modes if m != "off"]]  # the reference of every ratio always runs
    if unknown := set(modes) - set(MODES):
        p.error(f"unknown mode(s) {sorted(unknown)}; choose from {', '.join(MODES)}")
    setup = Setup(
        model=args.model or ("tiny-bert" if args.quick else "minilm"),
        rounds=args.rounds,
        members=args.members,
        epochs=args.epochs,
        max_length=args.max_length,
    )
    from fedledger.bench.overhead.flower import run_flower

    runners: dict[str, Runner] = {
        "off": run_off,
        "embedded": run_embedded,
        "flower": run_flower,
        "fabric": lambda s, i: run_fabric(
            s, i, network_dir=args.network_dir, port_offset=args.port_offset, batch_timeout=args.batch_timeout
        ),
    }
    text = describe(setup, batch_timeout=args.batch_timeout, threads=args.threads)
    command = command_line()
    packages = (*CORE_PACKAGES, *ML_PACKAGES, *BASELINE_PACKAGES, *FABRIC_PACKAGES)

    def publish(runs: list[Run], loads: list[float], repeat: int) -> None:
        """Prints the tables; unless --no-write, writes CSV/JSON/PNG and the docs page."""
        machine = machine_facts(packages, fabric_peer="fabric" in modes)
        machine["load average during the runs (1 min, min-median-max)"] = (
            f"{min(loads):.2f} / {statistics.median(loads):.2f} / {max(loads):.2f}"
        )
        done = len({r.repeat for r in runs})
        status = "" if repeat == args.repeats - 1 else f" (interim: {done} of {args.repeats} repeats done)"
        rows = summarize(runs, modes)
        report(rows, text, machine, command, status)
        if args.no_write:
            return
        save(runs, rows, modes=modes, setup=setup, setup_text=text, machine=machine, command=command, status=status)
        page = write_page(runs, rows, setup_text=text, machine=machine, command=command, status=status)
        print(f"\nwrote {RESULTS / STUDY}.csv/.json/.png and {page}")

    import torch

    torch.set_num_threads(args.threads)
    with _quiet():
        measure(setup, modes, repeats=args.repeats, runners=runners, after_repeat=publish)
    return 0

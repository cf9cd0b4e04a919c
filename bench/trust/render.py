"""Renders the trust study: plots, the per-participant table, the findings, and docs/bench-trust.md."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.bench.harness import (
    DOCS,
    RESULTS,
    files_section,
    markdown_table,
    plots_section,
    pyplot,
    save_figure,
    save_page,
)
from fedledger.bench.trust.measure import HONEST, INTERMITTENT, MALICIOUS, SLEEPER

STUDY = "trust"


def plot(result: dict[str, Any], rules: Mapping[str, Any]) -> list[Path]:
    """Trust per participant and round, the reward split per round, and the final balances."""
    plt = pyplot()
    records = result["records"]
    names = list(result["final"])
    rounds = sorted({r["round"] for r in records})
    styles = {"honest": "-", "intermittent": "--", "malicious": ":", "sleeper": "-."}

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in names:
        rows = [r for r in records if r["participant"] == name]
        trust = [
            rules.get("trust_prior_accepted", 4.0) / (rules["trust_prior_accepted"] + rules["trust_prior_rejected"])
        ]
        ax.plot(
            [0, *rounds],
            trust + [r["trust"] for r in rows],
            styles[rows[0]["role"]],
            marker="o",
            label=f"{name} ({rows[0]['role']})",
        )
        for r in rows:
            if r["status"] == "suspended":
                ax.plot(r["round"], r["trust"], "kx", markersize=9)
    ax.axhline(
        rules["trust_suspend_below"], color="red", lw=1, label=f"suspension below {rules['trust_suspend_below']}"
    )
    ax.set_xlabel("round")
    ax.set_ylabel("trust score (on the ledger after the round)")
    ax.set_title("Trust per participant (x = suspended)")
    ax.legend(fontsize=7, loc="lower left")
    paths = [save_figure(fig, RESULTS / "trust_scores.png")]

    fig, ax = plt.subplots(figsize=(8, 4.5))
    bottom = np.zeros(len(rounds))
    for name in names:
        amounts = np.array(
            [next(r["reward"] for r in records if r["participant"] == name and r["round"] == n) for n in rounds]
        )
        ax.bar(rounds, amounts, bottom=bottom, label=name)
        bottom += amounts
    ax.set_xlabel("round")
    ax.set_ylabel("reward paid (units)")
    ax.set_title("Reward pool split per round (samples x trust of accepted updates)")
    ax.legend(fontsize=7, ncol=2)
    paths.append(save_figure(fig, RESULTS / "trust_rewards.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    balances = result["balances"]
    ax.bar(list(balances), list(balances.values()), color=["C0"] * len(HONEST) + ["C1", "C3", "C4"])
    ax.set_ylabel("final balance (units)")
    ax.set_title("Final reward split")
    ax.tick_params(axis="x", rotation=30)
    paths.append(save_figure(fig, RESULTS / "trust_final_split.png"))
    return paths


def table(result: dict[str, Any]) -> str:
    """One row per participant: per round its action, verdict, trust after the round and reward paid."""
    rounds = sorted({r["round"] for r in result["records"]})
    headers = ["participant", "role", *[f"r{n}" for n in rounds], "final trust", "status", "balance"]
    rows = []
    for name, final in result["final"].items():
        cells = []
        for n in rounds:
            r = next(x for x in result["records"] if x["participant"] == name and x["round"] == n)
            mark = {"accepted": "✓", "rejected": "✗", "none": "-"}.get(r["verdict"], r["verdict"])
            cells.append(f"{r['action']} {mark} {r['trust']:.2f} ({r['reward']})")
        rows.append([name, final["role"], *cells, f"{final['trust']:.3f}", final["status"], result["balances"][name]])
    return markdown_table(headers, rows)


def findings(result: dict[str, Any]) -> str:
    """What the ledger's numbers say: the honest members' share, and how each non-honest member fared."""
    final, balances = result["final"], result["balances"]
    total = sum(balances.values()) or 1
    honest_share = sum(balances[n] for n in HONEST) / total
    lines = [
        f"- Honest members (4 of 7) earned {honest_share:.1%} of all rewards paid "
        f"({sum(balances[n] for n in HONEST)} of {total} units).",
    ]
    for name in (INTERMITTENT, MALICIOUS, SLEEPER):
        rows = [r for r in result["records"] if r["participant"] == name]
        suspended = next((r["round"] for r in rows if r["status"] == "suspended"), None)
        rejected = sum(r["verdict"] == "rejected" for r in rows)
        lines.append(
            f"- {name} ({final[name]['role']}): {rejected} rejected update(s), final trust {final[name]['trust']:.3f}, "
            + (f"suspended after round {suspended}" if suspended else "never suspended")
            + f", balance {balances[name]} ({balances[name] / total:.1%})."
        )
    wrong = [r for r in result["records"] if r["role"] == "honest" and r["verdict"] == "rejected"]
    lines.append(f"- Honest updates rejected (false positives of the detector): {len(wrong)}.")
    return "\n".join(lines)


def write_docs(result: dict[str, Any], machine: Mapping[str, str], command: str, plots: Sequence[Path]) -> Path:
    """Writes docs/bench-trust.md for a stored or fresh ``result`` (the study's JSON)."""
    rules = result["rules"]
    sections = [
        (
            "Set-up",
            "\n".join(
                [
                    f"- Ledger: embedded (the real contract, SDK and update store); model {result['model']} + LoRA, "
                    "breast-cancer Wisconsin as text (levels), Dirichlet alpha=1 over 7 trainers "
                    f"(rows: {', '.join(f'{k} {v}' for k, v in result['dataset_sizes'].items())}).",
                    f"- Local training: {result['train']} (no DP: trust depends on verdicts only, not on ε).",
                    f"- Contract rules: {rules}. Trust = (a + accepted) / (a + b + accepted + w·rejected); suspended "
                    "below the threshold; each round's pool is split over accepted updates by samples x trust at "
                    "submission.",
                    "- Behaviours: honest x4; clinic-e skips rounds 2, 5, 8 and sends Gaussian noise (with the spread "
                    "of the previous round's accepted updates) in rounds 3 and 6; mallory sends -10 x its delta "
                    "every round; lab-h is honest, then sends 10 x its delta from the round after `--turn`.",
                ]
            ),
        ),
        ("Findings", findings(result)),
        (
            "Per participant and round",
            "Cell = action, verdict (✓ accepted, ✗ rejected, - none), trust after the round, (reward paid).\n\n"
            + table(result),
        ),
        (
            "Rounds",
            markdown_table(
                ["round", "accepted", "rejected", "accuracy", "precision", "recall", "f1", "seconds"],
                [
                    [
                        r["round"],
                        r["accepted"],
                        r["rejected"],
                        r["accuracy"],
                        r["precision"],
                        r["recall"],
                        r["f1"],
                        r["seconds"],
                    ]
                    for r in result["rounds"]
                ],
            ),
        ),
        plots_section(*plots),
        files_section(STUDY, "one row per participant and round", "everything, incl. rules and participant ids"),
    ]
    return save_page(
        DOCS / "bench-trust.md",
        "Bench 6 — trust scores and reward split",
        command=command,
        machine=machine,
        sections=sections,
        intro="Trust, status, verdicts and rewards as the contract records them, per participant and round.",
    )

"""Pure summaries of the robustness cells: medians over seeds, per-round rows, the headline table, the targets."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedledger.bench.robustness.grid import HEADLINE, JUDGING, NORM_MATCHED, Setup


def median(values: Sequence[float]) -> float:
    """Median of the values that are not NaN (NaN when none is)."""
    clean = [v for v in values if v == v]
    return float(statistics.median(clean)) if clean else float("nan")


def pooled(cell: Mapping[str, Any], key: str) -> float:
    """Mean of a per-round rate (``tpr``/``fpr``) over the rounds of one cell that define it."""
    values = [r[key] for r in cell["rounds"] if key in r and r[key] == r[key]]
    return float(np.mean(values)) if values else float("nan")


def fmt_rate(value: float) -> str:
    """A rate with two decimals, ``n/a`` for NaN."""
    return "n/a" if value != value else f"{value:.2f}"


def summarise(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (attack, fraction, defence): medians over seeds of final metrics and of pooled TPR/FPR."""
    groups: dict[tuple[str, float, str], list[Mapping[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["attack"], cell["fraction"], cell["defence"]), []).append(cell)
    rows = []
    for (attack, fraction, defence), group in groups.items():
        finals = [c["rounds"][-1] for c in group]
        row: dict[str, Any] = {
            "attack": attack,
            "fraction": fraction,
            "defence": defence,
            "seeds": len(group),
            "malicious": len(group[0]["malicious"]),
        }
        for key in ("accuracy", "precision", "recall", "f1", "loss"):
            row[key] = median([r[key] for r in finals])
        row["attack_success"] = median([r.get("attack_success", float("nan")) for r in finals])
        # Detection rates pooled over all rounds of a run (every round judges every update), median over seeds.
        row["tpr"] = median([pooled(c, "tpr") for c in group])
        row["fpr"] = median([pooled(c, "fpr") for c in group])
        row["seconds"] = median([c["seconds"] for c in group])
        rows.append(row)
    return rows


def headline_table(rows: Sequence[Mapping[str, Any]], setup: Setup) -> tuple[list[str], list[list[Any]]]:
    """Final accuracy per attack x defence at the headline fraction, with TPR/FPR of judging defences."""
    index = {(r["attack"], r["defence"]): r for r in rows if r["fraction"] in (0.0, HEADLINE)}
    headers = ["attack", *setup.defences]
    table = []
    for attack in ("none", *setup.attacks):
        line: list[Any] = [attack]
        for defence in setup.defences:
            r = index.get((attack, defence))
            if r is None:
                line.append("—")
                continue
            text = f"{r['accuracy']:.3f}"
            if defence in JUDGING:
                text += f" ({fmt_rate(r['tpr'])}/{fmt_rate(r['fpr'])})"
            line.append(text)
        table.append(line)
    return headers, table


def targets(rows: Sequence[Mapping[str, Any]], setup: Setup) -> list[tuple[str, bool, str]]:
    """The issue's targets at 20 % malicious: (statement, met, measured numbers)."""
    at = {(r["attack"], r["defence"]): r for r in rows if r["fraction"] in (0.0, HEADLINE)}
    out = []
    if ("none", "fedavg") not in at or not all((a, "fedledger") in at for a in setup.attacks):
        return out
    reference = at[("none", "fedavg")]["accuracy"]
    gaps = {a: reference - at[(a, "fedledger")]["accuracy"] for a in setup.attacks}
    worst = max(gaps, key=lambda a: gaps[a])
    failing = [f"{a} {at[(a, 'fedledger')]['accuracy']:.3f}" for a in setup.attacks if gaps[a] > 0.02]
    out.append(
        (
            f"final accuracy within 2 points of no attack (FedAvg, no attacker: {reference:.3f}) under every attack",
            not failing,
            f"worst: {worst} {at[(worst, 'fedledger')]['accuracy']:.3f} ({-100 * gaps[worst]:+.1f} points)"
            + (f"; more than 2 points below: {', '.join(failing)}" if failing else ""),
        )
    )
    detection = {a: (at[(a, "fedledger")]["tpr"], at[(a, "fedledger")]["fpr"]) for a in setup.attacks}
    misses = [f"{a} {t:.2f}/{f:.2f}" for a, (t, f) in detection.items() if not (t >= 0.95 and f <= 0.05)]
    fpr_none = at.get(("none", "fedledger"), {}).get("fpr", float("nan"))
    out.append(
        (
            "TPR ≥ 0.95 at FPR ≤ 0.05 under every attack (pooled over rounds, median of seeds)",
            not misses,
            (f"missed (TPR/FPR): {', '.join(misses)}" if misses else "all attacks")
            + f"; FPR without attack {fmt_rate(fpr_none)}",
        )
    )
    for attack in NORM_MATCHED:
        if attack not in setup.attacks:
            continue
        mine = at[(attack, "fedledger")]
        baselines = [d for d in setup.defences if d != "fedledger" and (attack, d) in at]
        best = max(baselines, key=lambda d: at[(attack, d)]["accuracy"])
        accuracy_ok = all(mine["accuracy"] >= at[(attack, d)]["accuracy"] for d in baselines)
        judged = [d for d in baselines if d in JUDGING]
        youden = mine["tpr"] - mine["fpr"]
        detection_ok = all(youden > at[(attack, d)]["tpr"] - at[(attack, d)]["fpr"] for d in judged)
        out.append(
            (
                f"better than every baseline on {attack}: final accuracy ≥ each baseline's and TPR-FPR above "
                "Krum's and Multi-Krum's",
                accuracy_ok and detection_ok,
                f"fedledger {mine['accuracy']:.3f} (TPR {fmt_rate(mine['tpr'])}, FPR {fmt_rate(mine['fpr'])}); "
                f"best baseline {best} {at[(attack, best)]['accuracy']:.3f}; "
                + ", ".join(
                    f"{d} TPR {fmt_rate(at[(attack, d)]['tpr'])} FPR {fmt_rate(at[(attack, d)]['fpr'])}" for d in judged
                ),
            )
        )
    return out


def per_round(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One CSV row per (seed, attack, fraction, defence, round)."""
    rows = []
    for c in cells:
        for r in c["rounds"]:
            rows.append(
                {
                    "seed": c["seed"],
                    "attack": c["attack"],
                    "fraction": c["fraction"],
                    "defence": c["defence"],
                    **{k: v for k, v in r.items() if k != "n"},
                    "rejected": " ".join(map(str, r.get("rejected", []))),
                    "malicious": " ".join(map(str, c["malicious"])),
                }
            )
    return rows

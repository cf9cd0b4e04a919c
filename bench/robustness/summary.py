"""Pure summaries of the robustness cells: means and spreads over seeds, per-round rows, and the page's tables
(the discrimination table, the targets of issue 11, the side-by-side accuracies)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedledger.bench.robustness.grid import ADAPTIVE_ATTACKS, JUDGING, Setup

#: The undefended run must lose at least this much accuracy (points, mean over seeds) under every attack...
BAR_POINTS = 10.0
#: ... or, for the backdoor, reach at least this attack success rate.
BAR_ASR = 0.5
#: Targets: the project's detector within this many points of the clean run, ...
WITHIN_POINTS = 2.0
#: ... with at least this TPR at at most this FPR.
TARGET_TPR, TARGET_FPR = 0.90, 0.05


def _clean(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v == v]


def mean(values: Sequence[float]) -> float:
    """Mean of the values that are not NaN (NaN when none is)."""
    clean = _clean(values)
    return float(np.mean(clean)) if clean else float("nan")


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(min, max, population std) of the values that are not NaN (NaNs when none is)."""
    clean = _clean(values)
    if not clean:
        return float("nan"), float("nan"), float("nan")
    return min(clean), max(clean), float(np.std(clean))


def pooled(cell: Mapping[str, Any], key: str) -> float:
    """Mean of a per-round value (``tpr``/``fpr``, ``accuracy``, ...) over the rounds of one cell that define it."""
    return mean([r[key] for r in cell["rounds"] if key in r])


def fmt_rate(value: float) -> str:
    """A rate with two decimals, ``n/a`` for NaN."""
    return "n/a" if value != value else f"{value:.2f}"


def fmt_acc(row: Mapping[str, Any], key: str = "accuracy") -> str:
    """Mean accuracy over seeds with its range, e.g. ``0.912 (0.89-0.93)``; the mean alone for one seed."""
    if row["seeds"] < 2:
        return f"{row[key]:.3f}"
    return f"{row[key]:.3f} ({row[key + '_min']:.2f}-{row[key + '_max']:.2f})"


def summarise(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (attack, fraction, defence): over seeds, the mean and spread of the final accuracy, of the
    accuracy averaged over rounds and of the backdoor's attack success rate; TPR/FPR pooled over a run's rounds
    then averaged over seeds (and the worst single round); the attackers' share of the FedAvg weight."""
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
        series = {
            "accuracy": [r["accuracy"] for r in finals],
            "accuracy_rounds": [pooled(c, "accuracy") for c in group],
            "attack_success": [r.get("attack_success", float("nan")) for r in finals],
        }
        for key, values in series.items():
            row[key] = mean(values)
            row[f"{key}_min"], row[f"{key}_max"], row[f"{key}_std"] = spread(values)
        for key in ("precision", "recall", "f1", "loss"):
            row[key] = mean([r[key] for r in finals])
        # Detection rates pooled over the rounds of a run (every round judges every update), mean over seeds.
        row["tpr"] = mean([pooled(c, "tpr") for c in group])
        row["fpr"] = mean([pooled(c, "fpr") for c in group])
        every_round = [r for c in group for r in c["rounds"]]
        row["tpr_worst_round"] = min(_clean([r.get("tpr", float("nan")) for r in every_round]), default=float("nan"))
        row["fpr_worst_round"] = max(_clean([r.get("fpr", float("nan")) for r in every_round]), default=float("nan"))
        row["malicious_weight"] = mean([pooled(c, "malicious_weight") for c in group])
        row["seconds"] = mean([c["seconds"] for c in group])
        rows.append(row)
    return rows


def _index(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, float, str], Mapping[str, Any]]:
    return {(r["attack"], r["fraction"], r["defence"]): r for r in rows}


def discrimination(rows: Sequence[Mapping[str, Any]], setup: Setup) -> list[dict[str, Any]]:
    """Per attack and fraction, undefended FedAvg against the clean run (no attacker, FedAvg): the cost in
    points of the final accuracy and of the accuracy averaged over rounds (means over seeds), the backdoor's
    attack success rate, the attackers' FedAvg weight share, and whether the bar is met (final cost
    >= :data:`BAR_POINTS`, or ASR >= :data:`BAR_ASR` for the backdoor)."""
    at = _index(rows)
    clean = at.get(("none", 0.0, "fedavg"))
    out: list[dict[str, Any]] = []
    if clean is None:
        return out
    for fraction in setup.fractions:
        for attack in setup.attacks:
            r = at.get((attack, fraction, "fedavg"))
            if r is None:
                continue
            cost = 100 * (clean["accuracy"] - r["accuracy"])
            cost_rounds = 100 * (clean["accuracy_rounds"] - r["accuracy_rounds"])
            asr = r["attack_success"] if attack == "backdoor" else float("nan")
            out.append(
                {
                    "attack": attack,
                    "fraction": fraction,
                    "clean": clean,
                    "undefended": r,
                    "cost": cost,
                    "cost_rounds": cost_rounds,
                    "asr": asr,
                    "met": cost >= BAR_POINTS or asr >= BAR_ASR,
                }
            )
    return out


def discrimination_table(rows: Sequence[Mapping[str, Any]], setup: Setup) -> tuple[list[str], list[list[Any]]]:
    """The page's first table: can the benchmark tell defending from doing nothing?"""
    headers = [
        "attack",
        "malicious",
        "attackers' FedAvg weight",
        "clean final acc.",
        "undefended final acc.",
        "cost (points)",
        "clean acc. over rounds",
        "undefended acc. over rounds",
        "cost over rounds",
        "backdoor ASR (clean)",
        f"≥ {BAR_POINTS:.0f} points (final) or ASR ≥ {BAR_ASR:.0%}",
    ]
    table = []
    for d in discrimination(rows, setup):
        clean, r = d["clean"], d["undefended"]
        asr = "" if d["attack"] != "backdoor" else f"{fmt_rate(d['asr'])} ({fmt_rate(clean['attack_success'])})"
        table.append(
            [
                d["attack"],
                f"{round(100 * d['fraction'])} % ({r['malicious']})",
                f"{r['malicious_weight']:.2f}",
                fmt_acc(clean),
                fmt_acc(r),
                f"{d['cost']:+.1f}",
                fmt_acc(clean, "accuracy_rounds"),
                fmt_acc(r, "accuracy_rounds"),
                f"{d['cost_rounds']:+.1f}",
                asr,
                "**yes**" if d["met"] else "**no**",
            ]
        )
    return headers, table


def _attack_detail(
    at: Mapping[tuple[str, float, str], Mapping[str, Any]], setup: Setup, attack: str, fraction: float, clean: float
) -> dict[str, Any] | None:
    mine = at.get((attack, fraction, "fedledger"))
    if mine is None:
        return None
    baselines = [d for d in setup.defences if d != "fedledger" and (attack, fraction, d) in at]
    best = max(baselines, key=lambda d: at[(attack, fraction, d)]["accuracy"]) if baselines else None
    best_accuracy = at[(attack, fraction, best)]["accuracy"] if best else float("nan")
    return {
        "attack": attack,
        "fraction": fraction,
        "row": mine,
        "gap": 100 * (clean - mine["accuracy"]),
        "within": 100 * (clean - mine["accuracy"]) <= WITHIN_POINTS,
        "detects": mine["tpr"] >= TARGET_TPR and mine["fpr"] <= TARGET_FPR,
        "best": best,
        "best_accuracy": best_accuracy,
        "beats": best is None or mine["accuracy"] >= best_accuracy,
    }


def target_details(rows: Sequence[Mapping[str, Any]], setup: Setup) -> list[dict[str, Any]]:
    """Per attack and fraction, the project's detector against the targets (see :func:`targets`)."""
    at = _index(rows)
    clean = at.get(("none", 0.0, "fedavg"))
    if clean is None:
        return []
    details = [_attack_detail(at, setup, a, fr, clean["accuracy"]) for fr in setup.fractions for a in setup.attacks]
    return [d for d in details if d is not None]


def targets(rows: Sequence[Mapping[str, Any]], setup: Setup) -> list[tuple[str, bool, str]]:
    """Issue 11's targets at each fraction, for every attack incl. the adaptive ones: (statement, met, numbers).

    - fedledger's mean final accuracy within :data:`WITHIN_POINTS` of the clean run (no attacker, FedAvg);
    - TPR >= :data:`TARGET_TPR` at FPR <= :data:`TARGET_FPR` (pooled over rounds, mean over seeds);
    - on the adaptive attacks, fedledger's mean final accuracy not below any baseline's."""
    at = _index(rows)
    clean = at.get(("none", 0.0, "fedavg"))
    details = target_details(rows, setup)
    if clean is None or not details:
        return []
    out = []
    for fraction in setup.fractions:
        mine = [d for d in details if d["fraction"] == fraction]
        if not mine:
            continue
        pct = f"{round(100 * fraction)} %"
        worst = max(mine, key=lambda d: d["gap"])
        failing = [f"{d['attack']} {d['row']['accuracy']:.3f} ({-d['gap']:+.1f})" for d in mine if not d["within"]]
        out.append(
            (
                f"{pct}: fedledger's mean final accuracy within {WITHIN_POINTS:.0f} points of the clean run "
                f"({clean['accuracy']:.3f}) under every attack",
                not failing,
                f"worst: {worst['attack']} {worst['row']['accuracy']:.3f} ({-worst['gap']:+.1f} points)"
                + (f"; more than {WITHIN_POINTS:.0f} points below: {', '.join(failing)}" if failing else ""),
            )
        )
        misses = [
            f"{d['attack']} {fmt_rate(d['row']['tpr'])}/{fmt_rate(d['row']['fpr'])}" for d in mine if not d["detects"]
        ]
        fpr_none = at.get(("none", 0.0, "fedledger"), {}).get("fpr", float("nan"))
        out.append(
            (
                f"{pct}: TPR ≥ {TARGET_TPR:.2f} at FPR ≤ {TARGET_FPR:.2f} under every attack (pooled over rounds, "
                "mean over seeds)",
                not misses,
                (f"missed (TPR/FPR): {', '.join(misses)}" if misses else "all attacks")
                + f"; FPR without attack {fmt_rate(fpr_none)}",
            )
        )
        adaptive = [d for d in mine if d["attack"] in ADAPTIVE_ATTACKS]
        if adaptive:
            out.append(
                (
                    f"{pct}: on the adaptive attacks, fedledger's mean final accuracy not below any baseline's",
                    all(d["beats"] for d in adaptive),
                    "; ".join(
                        f"{d['attack']}: fedledger {d['row']['accuracy']:.3f}, best baseline {d['best']} "
                        f"{d['best_accuracy']:.3f}"
                        for d in adaptive
                    ),
                )
            )
    return out


def target_table(rows: Sequence[Mapping[str, Any]], setup: Setup) -> tuple[list[str], list[list[Any]]]:
    """Per attack and fraction: fedledger's accuracy, gap to the clean run, TPR/FPR, the attackers' share of the
    aggregate's weight (fedledger's rules against plain FedAvg's), the best baseline."""
    headers = [
        "attack",
        "malicious",
        "fedledger final acc.",
        "vs clean (points)",
        f"≤ {WITHIN_POINTS:.0f}",
        "TPR / FPR (worst round)",
        f"TPR ≥ {TARGET_TPR:.2f}, FPR ≤ {TARGET_FPR:.2f}",
        "attackers' weight: fedledger / FedAvg",
        "best baseline (final acc.)",
        "not below it",
    ]
    table = []
    at = _index(rows)
    for d in target_details(rows, setup):
        r = d["row"]
        plain = at.get((d["attack"], d["fraction"], "fedavg"))
        table.append(
            [
                d["attack"],
                f"{round(100 * d['fraction'])} %",
                fmt_acc(r),
                f"{-d['gap']:+.1f}",
                "yes" if d["within"] else "**no**",
                f"{fmt_rate(r['tpr'])} / {fmt_rate(r['fpr'])} "
                f"({fmt_rate(r['tpr_worst_round'])} / {fmt_rate(r['fpr_worst_round'])})",
                "yes" if d["detects"] else "**no**",
                f"{r['malicious_weight']:.2f} / " + (f"{plain['malicious_weight']:.2f}" if plain else "—"),
                f"{d['best']} {d['best_accuracy']:.3f}" if d["best"] else "—",
                "yes" if d["beats"] else "**no**",
            ]
        )
    return headers, table


def accuracy_table(
    rows: Sequence[Mapping[str, Any]], setup: Setup, fraction: float, key: str = "accuracy"
) -> tuple[list[str], list[list[Any]]]:
    """``key`` (mean over seeds, ± std) per attack x defence at ``fraction``; the first row is the clean run."""
    at = _index(rows)
    headers = ["attack", *setup.defences]
    table = []
    for attack in ("none", *setup.attacks):
        line: list[Any] = [attack]
        for defence in setup.defences:
            r = at.get((attack, 0.0 if attack == "none" else fraction, defence))
            if r is None:
                line.append("—")
            elif r["seeds"] < 2:
                line.append(f"{r[key]:.3f}")
            else:
                line.append(f"{r[key]:.3f} ±{r[key + '_std']:.2f}")
        table.append(line)
    return headers, table


def detection_table(rows: Sequence[Mapping[str, Any]], setup: Setup) -> tuple[list[str], list[list[Any]]]:
    """TPR/FPR (pooled over rounds, mean over seeds) of the defences that judge single updates, per attack."""
    at = _index(rows)
    judges = [d for d in JUDGING if d in setup.defences]
    headers = ["attack", *(f"{d} {round(100 * fr)} %" for fr in setup.fractions for d in judges)]
    table = []
    for attack in ("none", *setup.attacks):
        line: list[Any] = [attack]
        for fraction in setup.fractions:
            for defence in judges:
                r = at.get((attack, 0.0 if attack == "none" else fraction, defence))
                line.append("—" if r is None else f"{fmt_rate(r['tpr'])}/{fmt_rate(r['fpr'])}")
        table.append(line)
    return headers, table


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
                    "refused": " ".join(map(str, r.get("refused", []))),
                    "malicious": " ".join(map(str, c["malicious"])),
                }
            )
    return rows


#: Issue 11: with honest members only, under DP-SGD at this epsilon on non-IID data, at most this share rejected.
HONEST_DP_EPSILON = 8.0
HONEST_DP_MAX_REJECTED = 0.05


def honest_dp_target(runs: Sequence[Mapping[str, Any]]) -> tuple[str, bool, str]:
    """The false-rejection target over the honest-DP runs of every seed: (statement, met, numbers)."""
    judged = sum(int(r["judged"]) for r in runs)
    rejected = sum(int(r["rejected"]) for r in runs)
    share = rejected / judged if judged else float("nan")
    epsilon = ", ".join(sorted({f"{float(r['epsilon']):g}" for r in runs}))
    per_seed = ", ".join(f"seed {r['seed']}: {r['rejected']}/{r['judged']}" for r in runs)
    return (
        f"honest members only, DP-SGD at epsilon = {epsilon} over the rounds, non-IID split: false rejections "
        f"≤ {HONEST_DP_MAX_REJECTED:.0%}",
        bool(judged) and share <= HONEST_DP_MAX_REJECTED,
        f"{rejected}/{judged} = {share:.1%} ({per_seed})",
    )

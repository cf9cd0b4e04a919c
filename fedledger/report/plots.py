"""The report's figures: matplotlib on the Agg backend, returned as base64 PNG to inline in the page."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fedledger.report.facts import LedgerFacts

METRICS = ("accuracy", "precision", "recall", "f1")
COLOURS = {"accepted": "#2ca02c", "rejected": "#d62728"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless; never opens a window
    import matplotlib.pyplot as plt

    return plt


def short_name(participant_id: str) -> str:
    """'Org1MSP:hospital-a@org1.example.com' -> 'hospital-a'."""
    return participant_id.split(":", 1)[-1].split("@", 1)[0]


def to_png(figure: Any) -> str:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=96, metadata={"Software": None})
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _rounds(facts: LedgerFacts) -> list[int]:
    return [f.round.number for f in facts.rounds]


def metrics_figure(facts: LedgerFacts, baseline: Mapping[str, float] | None = None) -> str | None:
    """Each committed model's metrics by round; ``baseline`` (the starting model's) is drawn as round 0."""
    points: list[tuple[int, Mapping[str, Any]]] = [
        (f.round.number, f.model.metrics) for f in facts.rounds if f.model is not None and f.model.metrics
    ]
    if baseline:
        points.insert(0, (0, baseline))
    names = [m for m in METRICS if any(m in metrics for _, metrics in points)]
    if not names:
        names = sorted({k for _, metrics in points for k, v in metrics.items() if isinstance(v, int | float)})
    if not points or not names:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3.6))
    for name in names:
        xs = [n for n, metrics in points if name in metrics]
        axes.plot(xs, [float(metrics[name]) for _, metrics in points if name in metrics], marker="o", label=name)
    axes.set_xlabel("round")
    axes.set_ylabel("held-out score (on the ledger)")
    axes.set_xticks([n for n, _ in points])
    axes.set_title("Global model after each round (round 0: the starting model)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return to_png(figure)


def scores_figure(facts: LedgerFacts) -> str | None:
    """Every judged update against the detector's two rules, as FinalizeRound applied them.

    x: isolation score minus the round's threshold (left of 0: isolated); y: the update's largest robust
    deviation. An update is rejected in the shaded regions: isolated and beyond ``detector_min_deviation``
    (rule isolated-and-deviant), or beyond ``detector_max_deviation`` whatever its score (extreme-deviation).
    Both limits are the rules'; the points are the evidence the ledger recorded with each verdict. Two more
    rules do not live in this plane: near-copies (a sketch cosine above ``detector_max_similarity`` with
    another update; squares) and norm-bound (a norm above ``detector_max_norm_ratio`` times the round's median
    norm; triangles), drawn wherever their score and deviation put them.
    """
    judged = [
        (f.round.number, u)
        for f in facts.rounds
        for u in f.updates
        if u.score is not None and u.threshold is not None and u.deviation is not None
    ]
    if not judged:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.2))
    rules = facts.rules
    margins = [u.score - u.threshold for _, u in judged if u.score is not None and u.threshold is not None]
    deviations = [u.deviation for _, u in judged if u.deviation is not None]
    left, right = min(-0.05, *margins) * 1.2, max(0.05, *margins) * 1.2
    top = max(rules.detector_max_deviation or rules.detector_min_deviation, *deviations) * 1.15
    axes.fill_between([left, 0], rules.detector_min_deviation, top, color="#d62728", alpha=0.08)
    axes.plot(
        [left, 0, 0],
        [rules.detector_min_deviation] * 2 + [top],
        color="#d62728",
        linestyle="--",
        label=f"isolated-and-deviant (score < threshold, > {rules.detector_min_deviation:g} deviations)",
    )
    if rules.detector_max_deviation is not None:
        axes.fill_between([0, right], rules.detector_max_deviation, top, color="#d62728", alpha=0.15)
        axes.axhline(
            rules.detector_max_deviation,
            color="#d62728",
            linestyle=":",
            label=f"extreme-deviation (> {rules.detector_max_deviation:g} deviations)",
        )
    seen: set[str] = set()
    for number, update in judged:
        assert update.score is not None and update.threshold is not None
        copy = update.rule in ("near-copies", "norm-bound")
        limits = {
            "near-copies": f"cosine > {rules.detector_max_similarity:g}",
            "norm-bound": f"norm > {rules.detector_max_norm_ratio:g} x median",
        }
        kind = f"rejected: {update.rule} ({limits[update.rule]})" if copy else update.status
        label = kind if kind not in seen else None
        seen.add(kind)
        x = update.score - update.threshold
        axes.scatter(
            x,
            update.deviation,
            color={"near-copies": "#9467bd", "norm-bound": "#8c564b"}.get(
                update.rule, COLOURS.get(update.status, "#7f7f7f")
            ),
            marker={"near-copies": "s", "norm-bound": "^"}.get(
                update.rule, "x" if update.status == "rejected" else "o"
            ),
            s=40,
            label=label,
            zorder=3,
        )
        if update.status == "rejected":
            axes.annotate(
                f"{short_name(update.participant)} r{number}",
                (x, update.deviation),
                fontsize=7,
                xytext=(4, -8),
                textcoords="offset points",
            )
    axes.set_xlim(left, right)
    axes.set_ylim(0, top)
    axes.set_xlabel("isolation score - round threshold (left of 0: isolated)")
    axes.set_ylabel("largest robust deviation of a feature")
    axes.set_title("Every verdict against the detector's rules (evidence recorded on the ledger)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper right")
    return to_png(figure)


MARKERS = (("o", "circle"), ("s", "square"), ("^", "triangle"), ("D", "diamond"), ("v", "down triangle"))
LINESTYLES = (("-", "solid"), ("--", "dashed"), (":", "dotted"), ("-.", "dash-dot"))
#: How far apart (in rounds) members with the very same trust history are drawn, so none hides another.
OVERLAP_STEP = 0.06


@dataclass(frozen=True)
class SeriesStyle:
    marker: str
    linestyle: str
    offset: float  # x shift in rounds; non-zero only for a series identical to another one
    description: str  # the style in words, for the page's text alternative

    @property
    def shifted(self) -> bool:
        return self.offset != 0


def series_styles(series: Mapping[str, Mapping[int, float]]) -> dict[str, SeriesStyle]:
    """A distinct marker and line style per series (in name order), and, for series equal to another, a small
    x offset each so that members with the same values stay visible side by side instead of one on top."""
    names = sorted(series)
    groups: dict[tuple[tuple[int, float], ...], list[str]] = {}
    for name in names:
        groups.setdefault(tuple(sorted(series[name].items())), []).append(name)
    styles = {}
    for i, name in enumerate(names):
        (marker, marker_name), (line, line_name) = MARKERS[i % len(MARKERS)], LINESTYLES[i % len(LINESTYLES)]
        group = groups[tuple(sorted(series[name].items()))]
        offset = (group.index(name) - (len(group) - 1) / 2) * OVERLAP_STEP if len(group) > 1 else 0.0
        styles[name] = SeriesStyle(marker, line, offset, f"{marker_name} markers, {line_name} line")
    return styles


def trust_figure(facts: LedgerFacts) -> str | None:
    series = {pid: points for pid, points in facts.trust.items() if points}
    if not series:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3.6))
    styles = series_styles(series)
    for pid, points in sorted(series.items()):
        xs, style = sorted(points), styles[pid]
        axes.plot(
            [x + style.offset for x in xs],
            [points[x] for x in xs],
            marker=style.marker,
            linestyle=style.linestyle,
            label=short_name(pid),
            alpha=0.85,
        )
    axes.axhline(facts.rules.trust_suspend_below, color="#d62728", linestyle=":", label="suspension threshold")
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("round")
    axes.set_ylabel("trust after FinalizeRound")
    axes.set_xticks(_rounds(facts))
    axes.set_title("Trust score per participant (participant history on the ledger)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return to_png(figure)


def rewards_figure(facts: LedgerFacts) -> str | None:
    payouts = {pid: items for pid, items in facts.payouts.items() if items}
    if not payouts:
        return None
    plt = _pyplot()
    figure, (per_round, totals) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    rounds = _rounds(facts)
    bottom = [0.0] * len(rounds)
    for pid, items in sorted(payouts.items()):
        amounts = {p.round: p.amount for p in items}
        values = [float(amounts.get(n, 0)) for n in rounds]
        per_round.bar(rounds, values, bottom=bottom, label=short_name(pid))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    per_round.set_xlabel("round")
    per_round.set_ylabel("reward (ledger payouts)")
    per_round.set_xticks(rounds)
    per_round.set_title("Rewards per round")
    per_round.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.08), ncol=3)
    names = sorted(payouts)
    totals.barh(range(len(names)), [sum(x.amount for x in payouts[p]) for p in names], color="#1f77b4")
    totals.set_yticks(range(len(names)), [short_name(p) for p in names])
    totals.set_xlabel("total reward")
    totals.set_title("Totals")
    return to_png(figure)


def latency_figure(rows: Sequence[Mapping[str, Any]], steps: Sequence[str], *, title: str) -> str | None:
    """Stacked bars: one per round, one segment per step (seconds)."""
    if not rows:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(9, 1.6 + 0.45 * len(rows)))
    positions = list(range(len(rows)))
    left = [0.0] * len(rows)
    for step in steps:
        values = [float(r["steps"].get(step, 0.0)) for r in rows]
        axes.barh(positions, values, left=left, label=step.replace("_", " "))
        left = [a + b for a, b in zip(left, values, strict=True)]
    axes.set_yticks(positions, [str(r["round"]) for r in rows])
    axes.invert_yaxis()
    axes.set_ylabel("round")
    axes.set_xlabel("seconds")
    axes.set_title(title)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return to_png(figure)

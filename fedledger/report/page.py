"""The report page: one self-contained HTML file (inline CSS, plots as base64 PNG, no script, no link)."""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fedledger import __version__
from fedledger.chaincode.privacy_budget import SPENT_HEADING, spent_of_budget
from fedledger.experiments.baseline import baseline_metrics
from fedledger.report import plots
from fedledger.report.facts import LedgerFacts, RoundFacts, gather
from fedledger.report.rundir import BASELINE, LedgerUnreachableError, RunDir, connect_ledger, locate
from fedledger.sdk.errors import ContractRejected, GatewayError

logger = logging.getLogger(__name__)

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.9em;background:#f6f6f6;padding:0 .2em}
.rejected{color:#b00020;font-weight:600}.accepted{color:#1b7f2a}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em}
img{max-width:100%;border:1px solid #eee}
"""

#: Ledger-side phases of a round, from the transaction timestamps on the ledger (available for every run).
LEDGER_PHASES = (
    "collect updates (OpenRound to last SubmitUpdate)",
    "until CloseRound",
    "CloseRound to FinalizeRound",
    "FinalizeRound to CommitAggregate (aggregate, evaluate, commit)",
)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return str(value)


def table(headers: Sequence[str] | None, rows: Sequence[Sequence[Any]], *, raw: bool = False) -> str:
    """An HTML table; numbers right-aligned. ``raw`` cells are trusted HTML built here (already escaped).
    Without ``headers`` it is a list of facts: no header row, the first cell of each row heads that row."""
    if headers is None:
        body = "".join(
            f'<tr><th scope="row">{_e(key)}</th><td>{value if raw else _e(value)}</td></tr>' for key, value in rows
        )
        return f"<table><tbody>{body}</tbody></table>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, int | float) and not isinstance(cell, bool):
                cells.append(f'<td class="num">{_e(_num(cell))}</td>')
            else:
                cells.append(f"<td>{cell if raw else _e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(png: str | None, alt: str, missing: str) -> str:
    if png is None:
        return f'<p class="note">{_e(missing)}</p>'
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{png}">'


def _tx(facts: LedgerFacts, tx_id: str | None) -> str:
    if not tx_id:
        return "-"
    block = facts.blocks.get(tx_id)
    return f"{tx_id[:16]}… (block {block if block is not None else '?'})"


def _who(facts: LedgerFacts) -> dict[str, str]:
    return {p.id: f"{plots.short_name(p.id)} ({p.mspid})" for p in facts.participants}


#: How the report names the strategies (trainer.strategy's names, the rules' server_optimizer names).
STRATEGY_NAMES = {"fedavg": "FedAvg", "fedadam": "FedAdam"}


def strategy_text(strategy: Any) -> str:
    """{"name": "fedadam", "eta": 0.01, ...} -> "FedAdam (eta 0.01, ...)"; "-" when the run records none."""
    if not isinstance(strategy, dict) or not strategy.get("name"):
        return "-" if not strategy else str(strategy)
    params = ", ".join(f"{k} {_num(v)}" for k, v in strategy.items() if k != "name")
    name = STRATEGY_NAMES.get(str(strategy["name"]), str(strategy["name"]))
    return f"{name} ({params})" if params else name


# --- sections ---------------------------------------------------------------------------------------------


def _ledger_check(run: RunDir) -> str:
    if run.kind != "embedded":
        return "not re-verified here (Fabric: the peers validated every block; use the peer CLI to re-check)"
    from fedledger.chaincode.embedded.verify import verify_ledger

    return str(verify_ledger(run.resolve(run.ledger["path"]) / "ledger"))


def summary(run: RunDir, facts: LedgerFacts) -> str:
    genesis = facts.models[0] if facts.models else None
    final = facts.models[-1] if facts.models else None
    provenance = run.provenance or {}
    training = provenance.get("training") or {}
    privacy = training.get("privacy")
    rules = facts.rules
    spent = {pid: e for pid, e in facts.epsilon_spent.items() if e}
    most = max(spent, key=spent.__getitem__, default=None)
    dp_text = (
        f"; the members trained with DP-SGD for target ε {_num(privacy.get('target_epsilon'))} over all rounds"
        if privacy
        else ("; the model card says no DP-SGD" if run.provenance else "")
    )
    where = run.ledger.get("path") or run.ledger.get("network_dir") or ""
    rows = [
        ("run folder", run.path.name),  # not where it is now: the page is written into the folder, which may move
        ("model", provenance.get("base_model") or (genesis.name if genesis else "-")),
        ("genesis adapter", f"{genesis.hash} ({genesis.name})" if genesis else "-"),
        ("final adapter", f"v{final.version} {final.hash}, {_tx(facts, final.tx_id)}" if final else "-"),
        ("members (trainers)", ", ".join(_who(facts)[p.id] for p in facts.trainers) or "-"),
        ("rounds", f"{len(facts.rounds)} ({', '.join(f'{f.round.number}: {f.round.status}' for f in facts.rounds)})"),
        (
            SPENT_HEADING,
            (
                f"{spent_of_budget(spent[most], rules.epsilon_total)} at most ({_who(facts).get(most, most)}): "
                if most is not None
                else "no DP-SGD update on the ledger: "
            )
            + f"each member's ε composed over all its updates on the ledger (RDP, δ {_num(rules.dp_delta)}) "
            f"against the rules' budget per member over all rounds{dp_text}",
        ),
        ("ledger", f"{run.kind}, channel {run.ledger.get('channel', 'mychannel')} {where}".strip()),
        ("ledger check", _ledger_check(run)),
        (
            "rules",
            f"version {facts.rules.version}, detector needs ≥ {facts.rules.detector_min_updates} updates, "
            f"reward {facts.rules.reward_per_round} per round, "
            f"suspension below trust {facts.rules.trust_suspend_below}",
        ),
        ("strategy", strategy_text(training.get("strategy") or (final.server_optimizer if final else None))),
        ("update privacy", _privacy_text(facts)),
    ]
    if run.provenance and final is not None:
        card = (run.provenance.get("final_adapter") or {}).get("hash")
        agree = "agrees" if card == final.hash else f"DISAGREES (card: {card})"
        rows.append(("model card vs ledger", f"the card's final adapter {agree} with the ledger's latest model"))
    body = table(None, rows)
    tx_rows = []
    for f in facts.rounds:
        tx_rows.append(
            (
                f.round.number,
                f.round.status,
                len([u for u in f.updates if u.status == "accepted"]),
                len([u for u in f.updates if u.status == "rejected"]),
                _tx(facts, f.transactions.get("OpenRound")),
                _tx(facts, f.transactions.get("FinalizeRound")),
                f"v{f.model.version} {f.model.hash[:12]}…" if f.model else "-",
                _tx(facts, f.model.tx_id) if f.model else "-",
            )
        )
    body += "<h3>Transactions per round</h3>" + table(
        ["round", "status", "accepted", "rejected", "OpenRound", "FinalizeRound", "model", "CommitAggregate"], tx_rows
    )
    return body


def _privacy_text(facts: LedgerFacts) -> str:
    """Which rounds were secret-shared, and across which organisations, as the ledger records it."""
    shared = [f.round for f in facts.rounds if f.round.shared]
    plain = [f.round.number for f in facts.rounds if not f.round.shared]
    parts = []
    for record in shared:
        orgs = ", ".join(h["org"] for h in record.share_holders)
        parts.append(f"round {record.number} secret-shared across {orgs}")
    if plain:
        parts.append(f"round(s) {', '.join(map(str, plain))} plaintext (whole updates to the endorsers)")
    if shared:
        parts.append(
            "in a secret-shared round no party saw a member's update: each organisation's peers sketched and summed "
            "only its own shares, and the model is the sum of the organisations' sums"
        )
    return "; ".join(parts) or "-"


def performance(run: RunDir, facts: LedgerFacts) -> str:
    baseline = baseline_metrics(run.baseline, facts.models[0].hash if facts.models else None)
    committed = [f.model.metrics if f.model else {} for f in facts.rounds]
    extra = sorted({k for metrics in [baseline, *committed] for k in metrics} - set(plots.METRICS))
    names = [*plots.METRICS, *extra]
    rows: list[tuple[Any, ...]] = [
        (f.round.number, *[m.get(n) for n in names]) for f, m in zip(facts.rounds, committed, strict=True)
    ]
    if baseline:
        rows.insert(0, ("0 (starting model)", *[baseline.get(n) for n in names]))
    figure = _img(
        plots.metrics_figure(facts, baseline), "metrics per round", "No metrics were committed with the aggregates."
    )
    note = (
        "<p>The metrics the aggregator committed with each aggregate in <code>CommitAggregate</code> (held-out set; "
        "a synthetic run commits its own metric instead). "
        + (
            f"Round 0 is the starting model (genesis adapter), as the aggregator scored it on the same held-out set "
            f"before round 1 (<code>{_e(BASELINE)}</code>: the ledger records no metrics for the genesis model).</p>"
            if baseline
            else f"This run folder records no starting-model scores (<code>{_e(BASELINE)}</code>), so there is no "
            "round 0.</p>"
        )
    )
    return note + figure + table(["round", *names], rows)


def _update_row(facts: LedgerFacts, f: RoundFacts, u: Any) -> tuple[Any, ...]:
    verdict = f'<span class="{_e(u.status)}">{_e(u.status)}</span>'
    return (
        _e(f.round.number),
        _e(_who(facts).get(u.participant, u.participant)),
        f"<code>{_e(u.hash[:16])}…</code>",
        _e(u.samples),
        _e(spent_of_budget(u.epsilon_spent, facts.rules.epsilon_total)),
        _e(_num(u.score)),
        verdict,
        _e(u.reason),
        _e(_tx(facts, u.tx_id)),
    )


def anomalies(facts: LedgerFacts) -> str:
    figure = _img(
        plots.scores_figure(facts), "anomaly scores", "No update was scored (too few updates per round to detect)."
    )
    thresholds = table(
        ["round", "threshold", "where it comes from"],
        [(f.round.number, f.threshold, f.threshold_source) for f in facts.rounds],
    )
    updates = table(
        ["round", "participant", "update", "samples", SPENT_HEADING, "score", "verdict", "reason", "SubmitUpdate tx"],
        [_update_row(facts, f, u) for f in facts.rounds for u in sorted(f.updates, key=lambda u: u.participant)],
        raw=True,
    )
    records = [
        (a.round, _who(facts).get(a.participant, a.participant), a.rule or "-", a.score, a.threshold, a.reason)
        for f in facts.rounds
        for a in f.anomalies
    ]
    anomaly_table = (
        table(["round", "participant", "rule", "score", "threshold", "reason"], records)
        if records
        else "<p>No anomaly record on the ledger.</p>"
    )
    return (
        "<p>Verdicts as FinalizeRound wrote them, with the evidence it recorded: the isolation score of the "
        "contract's IsolationForest (over the sketch features each endorsing peer computed from the update bytes) "
        "against "
        "the round's threshold, and the update's largest robust deviation. The shaded regions are the two rules "
        "that reject: isolated <em>and</em> beyond <code>detector_min_deviation</code>, or beyond "
        "<code>detector_max_deviation</code> whatever the score. Two more rules reject wherever an update falls in "
        "this plane: near-copies, a sketch cosine above <code>detector_max_similarity</code> with another update of "
        "the round (purple squares), and norm-bound, a norm above <code>detector_max_norm_ratio</code> times the "
        "round's median norm (brown triangles). Every reason names its rule. Green: accepted; "
        "red crosses: rejected.</p>"
        + figure
        + "<h3>Detector threshold per round</h3>"
        + thresholds
        + "<h3>Every update</h3>"
        + updates
        + "<h3>Anomaly records</h3>"
        + anomaly_table
    )


def trust(facts: LedgerFacts) -> str:
    rounds = [f.round.number for f in facts.rounds]
    who = _who(facts)
    rows = [(who[p.id], *[facts.trust.get(p.id, {}).get(n) for n in rounds], p.trust, p.status) for p in facts.trainers]
    styles = plots.series_styles({pid: points for pid, points in facts.trust.items() if points})
    legend = "; ".join(f"{plots.short_name(pid)}: {style.description}" for pid, style in sorted(styles.items()))
    shifted = [plots.short_name(pid) for pid, style in sorted(styles.items()) if style.shifted]
    overlap = (
        f"<p>{_e(', '.join(shifted))} have the same trust as another member in every round: their points are drawn "
        f"side by side ({plots.OVERLAP_STEP:g} round apart) so that no line hides another; the table gives the "
        "exact values.</p>"
        if shifted
        else ""
    )
    return (
        "<p>Trust after each round's FinalizeRound, from each participant record's history on the ledger.</p>"
        + overlap
        + _img(plots.trust_figure(facts), f"trust per round: {legend}", "No trust history (no round was finalized).")
        + table(["participant", *[f"after round {n}" for n in rounds], "now", "status"], rows)
    )


def rewards(facts: LedgerFacts) -> str:
    rounds = [f.round.number for f in facts.rounds]
    who = _who(facts)
    rows = []
    for p in facts.trainers:
        amounts = {x.round: x.amount for x in facts.payouts.get(p.id, [])}
        epsilon = spent_of_budget(facts.epsilon_spent.get(p.id) or None, facts.rules.epsilon_total)
        rows.append((who[p.id], *[amounts.get(n, 0) for n in rounds], sum(amounts.values()), epsilon))
    return (
        "<p>Payouts written by FinalizeRound (pool split by samples x trust among accepted updates); totals are the "
        "ledger's balances.</p>"
        + _img(plots.rewards_figure(facts), "rewards", "No payout on the ledger.")
        + table(["participant", *[f"round {n}" for n in rounds], "total", SPENT_HEADING], rows)
    )


def ledger_phases(facts: LedgerFacts) -> list[dict[str, Any]]:
    """Each round's phases from its transactions' timestamps (client clocks, as signed into each tx)."""
    rows = []
    for f in facts.rounds:
        r = f.round
        submitted = max((u.submitted_at for u in f.updates), default=r.opened_at)
        closed = r.closed_at or r.finalized_at or submitted
        finalized = r.finalized_at or closed
        committed = f.model.timestamp if f.model else finalized
        values = (submitted - r.opened_at, closed - submitted, finalized - closed, committed - finalized)
        rows.append({"round": r.number, "steps": dict(zip(LEDGER_PHASES, (max(0.0, v) for v in values), strict=True))})
    return rows


def latency(run: RunDir, facts: LedgerFacts) -> str:
    parts = []
    timings = run.timings
    if timings and timings.get("rounds"):
        steps = list(timings.get("steps") or timings["rounds"][0]["steps"])
        rows = timings["rounds"]
        parts.append(
            "<p>Where each round's wall time went, as the federation timed it (<code>model/timings.json</code>; "
            "members trained one after another in one process, so their training and SubmitUpdate times are "
            "summed). Timings are measurements of this run, not ledger facts.</p>"
        )
        parts.append(_img(plots.latency_figure(rows, steps, title="Latency breakdown per round"), "latency", ""))
        parts.append(
            table(
                ["round", *[s.replace("_", " ") for s in steps], "round wall time"],
                [(r["round"], *[r["steps"].get(s, 0.0) for s in steps], r.get("wall")) for r in rows],
            )
        )
        per_member = [
            (r["round"], _who(facts).get(pid, pid), s.get("train"), s.get("submit"))
            for r in rows
            for pid, s in sorted(r.get("members", {}).items())
        ]
        if per_member:
            parts.append("<h3>Per member</h3>" + table(["round", "member", "local training s", "submit s"], per_member))
    else:
        parts.append(
            '<p class="note">This run folder has no <code>model/timings.json</code> (a synthetic demo, or a run '
            "that did not finish), so only the ledger's own timeline is shown.</p>"
        )
    phases = ledger_phases(facts)
    parts.append(
        "<h3>Timeline from the ledger</h3><p>From the timestamps of the round's transactions on the ledger.</p>"
    )
    figure = plots.latency_figure(phases, LEDGER_PHASES, title="Round phases (ledger timestamps)")
    parts.append(_img(figure, "phases", "No round on the ledger."))
    parts.append(table(["round", *LEDGER_PHASES], [(r["round"], *r["steps"].values()) for r in phases]))
    return "".join(parts)


def render(run: RunDir, facts: LedgerFacts) -> str:
    sections = [
        ("summary", "Run summary", summary(run, facts)),
        ("performance", "Model performance per round", performance(run, facts)),
        ("anomalies", "Anomaly scores and verdicts", anomalies(facts)),
        ("trust", "Trust scores", trust(facts)),
        ("rewards", "Rewards", rewards(facts)),
        ("latency", "Latency breakdown", latency(run, facts)),
    ]
    if facts.notes:
        sections.append(("notes", "Notes", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in facts.notes) + "</ul>"))
    nav = " · ".join(f'<a href="#{key}">{_e(title)}</a>' for key, title, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{_e(title)}</h2>{content}</section>' for key, title, content in sections)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>fedledger report: {_e(run.path.name)}</title><style>{STYLE}</style></head><body>"
        f"<h1>fedledger report: {_e(run.path.name)}</h1>"
        f"<p>Generated {generated} by fedledger {_e(__version__)} from the {_e(run.kind)} ledger "
        "(every ledger number below was read through the SDK's queries).</p>"
        f"<nav>{nav}</nav>{body}</body></html>\n"
    )


def build_report(run_dir: Path | str, *, network_dir: Path | None = None) -> str:
    """The report of a run folder as one HTML string (nothing is written)."""
    run = locate(run_dir)
    client = connect_ledger(run, network_dir=network_dir)
    try:
        facts = gather(client)
    except ContractRejected as exc:
        raise LedgerUnreachableError(
            f"the run's {run.kind} ledger holds no federation to report ({exc}); run one first (fedledger demo)"
        ) from exc
    except GatewayError as exc:
        raise LedgerUnreachableError(
            f"could not read the run's {run.kind} ledger ({exc}); check that it is up and reachable from here"
        ) from exc
    if not facts.rounds:
        facts.notes.append("the ledger has no round yet: nothing was trained")
    return render(run, facts)


def write_report(run_dir: Path | str, output: Path | str | None = None, *, network_dir: Path | None = None) -> Path:
    """Builds the report, then writes it (default ``<run dir>/report.html``); nothing is written on failure."""
    page = build_report(run_dir, network_dir=network_dir)
    target = Path(output) if output is not None else Path(run_dir) / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(target)
    return target


__all__ = ["build_report", "write_report"]

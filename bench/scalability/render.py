"""The scalability study's outputs: the results table, where each backend broke, the plots and the docs page
(``docs/bench-scalability.md``), from a report dict (also one read back from its JSON)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.bench.harness import (
    DOCS,
    RESULTS,
    markdown_table,
    plots_section,
    print_report,
    pyplot,
    report_page,
    save_figure,
    write_csv,
    write_json,
)
from fedledger.bench.ledgers import SHAPES
from fedledger.bench.scalability.fits import (
    ABSOLUTE_MAX_BYTES,
    CHAINCODE_EXECUTE_TIMEOUT_S,
    CLIENT_ENDORSE_TIMEOUT_S,
    EXTRAPOLATE_TO,
    GATEWAY_ENDORSEMENT_TIMEOUT_S,
    TOTAL_QUERY_LIMIT,
    evaluate_fit,
)

STUDY = "scalability"
PAGE = DOCS / f"bench-{STUDY}.md"


TABLE = (
    ("backend", "backend"),
    ("N", "n"),
    ("status", "status"),
    ("register/s", "register_tps"),
    ("register p50 ms", "register_p50_ms"),
    ("submit/s", "submit_tps"),
    ("submit p50 ms", "submit_p50_ms"),
    ("submit p99 ms", "submit_p99_ms"),
    ("FinalizeRound s", "finalize_s"),
    ("detector alone s", "detector_in_process_s"),
    ("ListUpdates s", "list_updates_s"),
    ("FedAvg s", "fedavg_s"),
    ("CommitAggregate s", "commit_aggregate_s"),
    ("rejected (malicious/honest)", "rejected_split"),
    ("load 1 min", "load_1min"),
)


def table_rows(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """One row of :data:`TABLE` per result row (missing values as NaN, rejections as malicious/honest)."""
    out = []
    for r in rows:
        r = {**r, "rejected_split": f"{r.get('malicious_rejected', '—')}/{r.get('honest_rejected', '—')}"}
        out.append([r.get(key, math.nan) for _h, key in TABLE])
    return out


def plot(rows: Sequence[dict[str, Any]], fits: Sequence[dict[str, Any]]) -> list[Path]:
    """Throughput vs N, and FinalizeRound / detector time vs N with the fits and the network's timeouts."""
    plt = pyplot()
    paths = []
    figure, ax = plt.subplots(figsize=(7, 4.5))
    for backend in dict.fromkeys(r["backend"] for r in rows):
        ok = [r for r in rows if r["backend"] == backend and "submit_tps" in r]
        for key, label, style in (("submit_tps", "SubmitUpdate", "-o"), ("register_tps", "RegisterParticipant", "--s")):
            points = [(r["n"], r[key]) for r in ok if key in r and r[key] == r[key]]
            if points:
                ax.plot(*zip(*points, strict=True), style, label=f"{backend}: {label}")
    ax.set(xscale="log", yscale="log", xlabel="participants per round N", ylabel="commits / s")
    ax.set_title("Throughput vs round size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(save_figure(figure, RESULTS / "scalability_throughput.png"))

    figure, ax = plt.subplots(figsize=(7, 4.5))
    grid = np.logspace(1, math.log10(EXTRAPOLATE_TO), 60)
    for backend in dict.fromkeys(r["backend"] for r in rows):
        ok = [r for r in rows if r["backend"] == backend and r.get("status") == "ok"]
        for key, label, style in (
            ("finalize_s", "FinalizeRound", "o"),
            ("detector_in_process_s", "detector alone", "x"),
        ):
            if not ok:
                continue
            (line,) = ax.plot([r["n"] for r in ok], [r[key] for r in ok], style, label=f"{backend}: {label}")
            step = "FinalizeRound" if key == "finalize_s" else "detector alone (in process)"
            found = next((f for f in fits if f["backend"] == backend and f["step"] == step), None)
            if found:
                ax.plot(grid, [evaluate_fit(found["coefficients"], n) for n in grid], ":", color=line.get_color())
    ax.axhline(GATEWAY_ENDORSEMENT_TIMEOUT_S, color="red", lw=0.8, ls="--", label="gateway endorsementTimeout 30 s")
    ax.axhline(CHAINCODE_EXECUTE_TIMEOUT_S, color="black", lw=0.8, ls="--", label="chaincode executetimeout 120 s")
    ax.set(xscale="log", yscale="log", xlabel="participants per round N", ylabel="seconds")
    ax.set_title("FinalizeRound time vs round size (dotted: fit, extrapolated)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    paths.append(save_figure(figure, RESULTS / "scalability_finalize.png"))
    return paths


def break_summary(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per backend: the largest complete round, and where and why the sweep broke (with the failed
    transaction's own log lines)."""
    lines = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        mine = [r for r in rows if r["backend"] == backend]
        ok = [r["n"] for r in mine if r.get("status") == "ok"]
        failed = [r for r in mine if r.get("status") == "failed"]
        largest = max(ok, default=0)
        if failed:
            f = failed[0]
            lines.append(
                f"- **{backend}**: largest complete round N = {largest}; broke at N = {f['n']} in "
                f"**{f['failed_step']}**: `{f['error']}`"
            )
            tx = re.search(r"transaction ([0-9a-f]{64})", f.get("error", ""))
            for node, tail in (f.get("network_log_tail") or {}).items():
                about = [x for x in tail if tx and tx.group(1) in x]  # the failed transaction's own log lines
                if about:
                    lines.append(f"  - {node} log: " + " / ".join(f"`{x[-220:]}`" for x in about[-2:]))
        else:
            lines.append(
                f"- **{backend}**: every round size completed (largest N = {largest}); no break within the "
                "measured range."
            )
    return lines


def findings(rows: Sequence[dict[str, Any]]) -> list[str]:
    """What the largest complete Fabric round says about where FinalizeRound spends its time."""
    ok = [r for r in rows if r["backend"] == "fabric" and r.get("status") == "ok" and r.get("finalize_shim")]
    if not ok:
        return []
    r = ok[-1]
    shim = r["finalize_shim"]
    calls = sum(v["count"] for k, v in shim.items() if "endorser" not in k)
    busy = sum(v["count"] * v["mean_ms"] for k, v in shim.items() if "endorser" not in k and v["count"]) / 1000
    endorse = next((v["mean_ms"] for k, v in shim.items() if "endorser" in k), math.nan)
    counts = ", ".join(f"{k} {v['count']:,}" for k, v in shim.items() if "endorser" not in k)
    return [
        f"- At N = {r['n']}, FinalizeRound took {r['finalize_s']} s on the client; each endorsing peer spent "
        f"{endorse / 1000:.2f} s on the proposal (mean of the two). The detector alone (`verdicts.detect`, "
        f"same records, this process) took {r['detector_in_process_s']} s.",
        f"- The rest is the contract's ledger traffic: {calls:,} shim calls on the two peers together "
        f"({counts}), "
        f"{busy:.2f} s of peer-side service time in total, i.e. about {calls / 2 / r['n']:.1f} sequential "
        "round trips per participant per peer (read each update, the previous round's updates for its "
        "direction, then write each update's verdict, the participant's trust and the payout). The peers "
        "answer each call in well under a millisecond, so the time is spent in the Python chaincode server: a "
        "thread hand-off to its asyncio loop, protobuf and gRPC per call (`chaincode/fabric/context.py`), JSON "
        "decoding of every update record and encoding of every write, and the detector itself.",
        f"- Chaincode servers used {(r.get('finalize_cpu_s') or {}).get('ccserver', math.nan)} CPU s during "
        f"FinalizeRound (both orgs); peers {(r.get('finalize_cpu_s') or {}).get('peer', math.nan)} s.",
    ]


def render(report: dict[str, Any]) -> str:
    """The docs page of a report."""
    rows, fits = report["rows"], report["fits"]
    fabric_ok = [r["n"] for r in rows if r["backend"] == "fabric" and r.get("status") == "ok"]
    target = max(fabric_ok, default=0) >= 1000
    fit_rows = [
        [
            f["backend"],
            f["step"],
            f["formula"],
            f["measured_max_n"],
            f["measured_s"],
            f["per_participant_ms_at_max_n"],
            f"{f['predicted_10k_bytes'] / 2**20:.1f} MiB" if f.get("predicted_10k_bytes") else f["predicted_10k_s"],
        ]
        for f in fits
    ]
    finalize_fits = [f for f in fits if f["step"] == "FinalizeRound" and f["backend"] == "fabric"]
    cross = [
        f"- {f['backend']}: the fitted FinalizeRound time passes the gateway's 30 s endorsement timeout at "
        f"N ≈ {f['n_exceeding_gateway_30s'] or '> 10⁶'}."
        for f in finalize_fits
    ]
    sections = [
        (
            "Method",
            "\n".join(
                [
                    f"- Round sizes N = {', '.join(map(str, report['sizes']))} on Fabric, "
                    f"{', '.join(map(str, report.get('embedded_sizes', report['sizes'])))} on the embedded ledger, "
                    "in that order, on one ledger per backend (participants accumulate; each size registers N *new* "
                    "trainers).",
                    f"- Update: {len(SHAPES)} float32 LoRA-shaped tensors (rank 8, width 800), "
                    f"{report['update_bytes']:,} bytes as safetensors, sent as transient data; a shared direction plus "
                    f"noise, the first {report['malicious']:.0%} sign-flipped and scaled by 5 "
                    "(so FinalizeRound writes anomalies).",
                    f"- {report['workers']} client threads in one process; on Fabric every trainer has its own "
                    "identity issued by its org's CA and its own gRPC connection (Org1/Org2 alternating). The "
                    "aggregator waits until both peers have each of its blocks (`committed_on`).",
                    "- Times are wall-clock on the client, one round per size (register and submit are N "
                    "transactions each, so their throughput and percentiles are over N samples; FinalizeRound, "
                    "ListUpdates and CommitAggregate are single transactions).",
                    f"- Every step is bounded by {report['step_limit']:.0f} s; the first failing step ends a backend's "
                    "sweep and is its break point. The Fabric network is the benchmark's own "
                    f"({report.get('network', 'not run')}), brought up and taken down by the script.",
                    "- Detector: the code in this tree (" + report["detector_version"] + ").",
                ]
            ),
        ),
        ("Results", markdown_table([h for h, _k in TABLE], table_rows(rows))),
        (
            "FinalizeRound on Fabric: where the time goes",
            markdown_table(
                (
                    "N",
                    "FinalizeRound s",
                    "detector alone s",
                    "endorsement per peer, ms (mean)",
                    "shim calls on both peers (count, mean ms)",
                    "CPU s by process group",
                    "peak RSS MB",
                ),
                [
                    [
                        r["n"],
                        r.get("finalize_s", math.nan),
                        r.get("detector_in_process_s", math.nan),
                        next((v["mean_ms"] for k, v in (r.get("finalize_shim") or {}).items() if "endorser" in k), "—"),
                        ", ".join(
                            f"{k} {v['count']} at {v['mean_ms']} ms"
                            for k, v in (r.get("finalize_shim") or {}).items()
                            if "endorser" not in k
                        ),
                        ", ".join(f"{k} {v}" for k, v in (r.get("finalize_cpu_s") or {}).items()),
                        ", ".join(f"{k} {v}" for k, v in (r.get("peak_rss_mb") or {}).items() if "ccserver" in k),
                    ]
                    for r in rows
                    if r["backend"] == "fabric" and "finalize_s" in r
                ],
            )
            + "\n\nShim calls are the chaincode's ledger reads and writes as the peers served them (Prometheus "
            "`chaincode_shim_request_duration`, both endorsing peers together); each is one round trip between "
            "the Python chaincode server and its peer, made one after another inside the transaction.",
        ),
        ("Where it breaks", "\n".join(break_summary(rows) + cross + findings(rows))),
        (
            f"Extrapolation to {EXTRAPOLATE_TO:,} participants (on paper)",
            markdown_table(
                (
                    "backend",
                    "step",
                    "fitted t(N)",
                    "largest N measured",
                    "measured s",
                    "ms per participant",
                    f"predicted at N = {EXTRAPOLATE_TO:,}",
                ),
                fit_rows,
            )
            + "\n\nLinear fits for per-transaction steps (wall time of N transactions), quadratic for FinalizeRound "
            "and the detector (the neighbour-distance feature compares every pair of sketches). Limits of this "
            f"network: gateway endorsementTimeout {GATEWAY_ENDORSEMENT_TIMEOUT_S:.0f} s (Fabric's core.yaml "
            f"default), chaincode executetimeout {CHAINCODE_EXECUTE_TIMEOUT_S:.0f} s (network/peer.sh), client "
            f"endorse timeout {CLIENT_ENDORSE_TIMEOUT_S:.0f} s (FabricGatewayBackend default; the benchmark's "
            f"aggregator raises it to the step limit), AbsoluteMaxBytes {ABSOLUTE_MAX_BYTES / 2**20:.0f} MiB per "
            f"transaction, totalQueryLimit {TOTAL_QUERY_LIMIT:,} records per range query.",
        ),
        (
            "FinalizeRound's detector alone, beyond the ledger runs",
            markdown_table(
                ("N", "detector s", "same, BLAS 1 thread", "peak traced memory MB"),
                [
                    [d["n"], d["detector_s"], d["detector_blas1_s"], d["peak_mb"]]
                    for d in report.get("detector_scale", [])
                ],
            )
            + "\n\n`chaincode.verdicts.detect` with the default rules over N feature records of real updates, in this "
            "process (numpy allocations traced with tracemalloc). Each endorsing peer's chaincode server runs this "
            "once per FinalizeRound; the pairwise terms (neighbour distances, the Theil-Sen slope of norms on "
            "samples) make time and memory grow with N².",
        ),
        (
            "Target",
            f"Participants per round on the real network, 10 → 100 → 1,000: **{'met' if target else 'missed'}** "
            f"(largest complete round on Fabric: N = {max(fabric_ok, default=0)}).",
        ),
        plots_section(
            (RESULTS / "scalability_throughput.png", "throughput"),
            (RESULTS / "scalability_finalize.png", "FinalizeRound"),
        ),
    ]
    return report_page(
        "Scalability: participants per round", report, sections, study=STUDY, make_target="bench-scalability"
    )


def write_outputs(report: dict[str, Any], *, with_csv: bool = True) -> list[Path]:
    """``scalability.csv`` (one row per round; nested values as JSON) unless ``with_csv`` is false, the JSON with
    everything, the plots and the docs page."""
    written = []
    if with_csv:
        flat = [{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()} for r in report["rows"]]
        written.append(write_csv(RESULTS / f"{STUDY}.csv", flat))
    written.append(write_json(RESULTS / f"{STUDY}.json", report))
    written += plot(report["rows"], report["fits"])
    PAGE.write_text(render(report))
    return [*written, PAGE]


def print_summary(report: dict[str, Any]) -> None:
    """What a run prints at the end: machine, command, the results table, break points, fits, detector alone."""
    table = markdown_table([h for h, _k in TABLE], table_rows(report["rows"]))
    print_report(
        "Scalability: participants per round", command=report["command"], machine=report["machine"], table=table
    )
    print("\n".join(break_summary(report["rows"])))
    for f in report["fits"]:
        print(
            f"  {f['backend']:9s} {f['step']:52s} {f['formula']:36s} → N=10,000: "
            f"{f.get('predicted_10k_bytes') or f['predicted_10k_s']}"
        )
    for d in report.get("detector_scale", []):
        print(f"  detector alone at N={d['n']}: {d['detector_s']} s, peak {d['peak_mb']} MB")

"""Per-participant cost of each step, fitted from the measured rounds and extrapolated to 10,000 participants
on paper, beside the limits of the network as configured. Pure functions of the result rows."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

EXTRAPOLATE_TO = 10_000
# Limits of the network as configured (network/peer.sh, network/templates/configtx.yaml, Fabric's core.yaml).
GATEWAY_ENDORSEMENT_TIMEOUT_S = 30.0  # core.yaml peer.gateway.endorsementTimeout (not overridden)
CHAINCODE_EXECUTE_TIMEOUT_S = 120.0  # CORE_CHAINCODE_EXECUTETIMEOUT in network/peer.sh
CLIENT_ENDORSE_TIMEOUT_S = 15.0  # FabricGatewayBackend's default endorse_timeout
ABSOLUTE_MAX_BYTES = 99 * 1024 * 1024  # configtx.yaml BatchSize.AbsoluteMaxBytes: one transaction must fit
TOTAL_QUERY_LIMIT = 100_000  # core.yaml ledger.state.totalQueryLimit: records one range query may return

#: (label, row key, degree): linear for N transactions, quadratic for the pairwise detector.
FITTED_STEPS = (
    ("register (wall)", "register_s", 1),
    ("submit (wall)", "submit_s", 1),
    ("FinalizeRound", "finalize_s", 2),
    ("detector alone (in process)", "detector_in_process_s", 2),
    ("ListUpdates", "list_updates_s", 1),
    ("FedAvg", "fedavg_s", 1),
    ("CommitAggregate", "commit_aggregate_s", 1),
)


def fit(ns: Sequence[float], ts: Sequence[float], degree: int) -> list[float]:
    """Non-negative least squares t(N) = c0 + c1 N (+ c2 N²): no cost term may be negative."""
    from scipy.optimize import nnls

    x, y = np.asarray(ns, float), np.maximum(np.asarray(ts, float), 1e-6)
    degree = min(degree, len(x) - 1)
    if degree < 1:
        return [float(y[0]) if len(y) else math.nan]
    # Absolute residuals: the largest rounds, which the extrapolation continues, weigh the most.
    design = np.vander(x, degree + 1, increasing=True)
    coefficients, _residual = nnls(design, y)
    return [float(c) for c in coefficients]


def evaluate_fit(coefficients: Sequence[float], n: float) -> float:
    """The fitted time at ``n``: sum of c_i n^i."""
    return float(sum(c * n**i for i, c in enumerate(coefficients)))


def formula(coefficients: Sequence[float]) -> str:
    """The fit as text, e.g. ``0.5 + 0.01·N + 1e-06·N² s``."""
    terms = [f"{coefficients[0]:.3g}"]
    if len(coefficients) > 1:
        terms.append(f"{coefficients[1]:.3g}·N")
    if len(coefficients) > 2:
        terms.append(f"{coefficients[2]:.3g}·N²")
    return " + ".join(terms) + " s"


def crossing(coefficients: Sequence[float], limit: float, upto: int = 10**6) -> int | None:
    """Smallest N (on a 1 % grid) whose fitted time exceeds ``limit``."""
    n = 10.0
    while n <= upto:
        if evaluate_fit(coefficients, n) > limit:
            return int(n)
        n *= 1.01
    return None


def extrapolate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-participant slopes from the completed rounds, and the time each step would take at 10,000."""
    out = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        ok = [r for r in rows if r["backend"] == backend and r.get("status") == "ok"]
        if len(ok) < 2:
            continue
        ns = [r["n"] for r in ok]
        for label, key, degree in FITTED_STEPS:
            coefficients = fit(ns, [r[key] for r in ok], degree)
            out.append(
                {
                    "backend": backend,
                    "step": label,
                    "formula": formula(coefficients),
                    "coefficients": coefficients,
                    "per_participant_ms_at_max_n": round(1000 * ok[-1][key] / ok[-1]["n"], 3),
                    "measured_max_n": ok[-1]["n"],
                    "measured_s": ok[-1][key],
                    "predicted_10k_s": round(evaluate_fit(coefficients, EXTRAPOLATE_TO), 1),
                    "n_exceeding_gateway_30s": crossing(coefficients, GATEWAY_ENDORSEMENT_TIMEOUT_S)
                    if key == "finalize_s"
                    else None,
                }
            )
        record = statistics.median(r["update_record_bytes"] for r in ok)
        out.append(
            {
                "backend": backend,
                "step": "FinalizeRound write set (update records only, est.)",
                "formula": f"{record:.0f} B·N",
                "coefficients": [0.0, record],
                "per_participant_ms_at_max_n": math.nan,
                "measured_max_n": ok[-1]["n"],
                "measured_s": math.nan,
                "predicted_10k_s": math.nan,
                "predicted_10k_bytes": int(record * EXTRAPOLATE_TO),
            }
        )
    return out

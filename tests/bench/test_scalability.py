"""The scalability study's pure parts: the fits and the extrapolation, the steps under a time limit, the in-process
verdict, and the page from synthetic rows. No ledger is started."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

from fedledger.anomaly.features import update_features
from fedledger.bench.scalability import fits, phases, render
from fedledger.bench.scalability.measure import cpu_delta, make_updates
from fedledger.bench.scalability.timed_rounds import verdict_in_process
from fedledger.chaincode.records import Rules
from fedledger.tensors import decode

NS = [10, 30, 100, 300, 1000]


def test_fit_recovers_a_linear_cost() -> None:
    coefficients = fits.fit(NS, [0.5 + 0.01 * n for n in NS], 1)
    assert coefficients == pytest.approx([0.5, 0.01], rel=1e-6)
    assert fits.evaluate_fit(coefficients, fits.EXTRAPOLATE_TO) == pytest.approx(100.5)


def test_fit_recovers_a_quadratic_cost() -> None:
    coefficients = fits.fit(NS, [0.2 + 0.001 * n + 2e-6 * n * n for n in NS], 2)
    assert coefficients == pytest.approx([0.2, 0.001, 2e-6], rel=1e-4)


def test_fit_never_returns_a_negative_cost_term() -> None:
    coefficients = fits.fit(NS, [5.0, 4.0, 3.0, 2.0, 1.0], 1)  # falling times: the slope is clamped at zero
    assert all(c >= 0 for c in coefficients)
    assert coefficients[1] == 0.0


def test_fit_degree_is_capped_by_the_number_of_points() -> None:
    assert len(fits.fit([10, 100], [1.0, 2.0], 2)) == 2
    assert fits.fit([10], [3.0], 2) == [3.0]


def test_formula_and_crossing() -> None:
    assert fits.formula([0.5, 0.01]) == "0.5 + 0.01·N s"
    assert fits.formula([0.5, 0.01, 2e-06]) == "0.5 + 0.01·N + 2e-06·N² s"
    n = fits.crossing([1.0, 0.01], 30.0)  # 1 + 0.01 N > 30 from N = 2900 on
    assert n is not None and 2900 <= n <= 2900 * 1.011
    assert fits.crossing([1.0, 0.0], 30.0) is None


def _row(backend: str, n: int, *, status: str = "ok", slope: float = 0.001) -> dict[str, object]:
    row: dict[str, object] = {"backend": backend, "n": n, "status": status, "update_record_bytes": 1500}
    for _label, key, _degree in fits.FITTED_STEPS:
        row[key] = round(0.1 + slope * n, 6)
    return row


def test_extrapolate_fits_every_step_of_each_backend_with_two_complete_rounds() -> None:
    rows = [
        _row("embedded", 10),
        _row("embedded", 100),
        _row("embedded", 1000),
        _row("fabric", 10),
        _row("fabric", 100, status="failed"),
    ]
    out = fits.extrapolate(rows)
    assert {f["backend"] for f in out} == {"embedded"}  # fabric has only one complete round
    steps = {f["step"]: f for f in out}
    assert len(steps) == len(fits.FITTED_STEPS) + 1
    finalize = steps["FinalizeRound"]
    assert finalize["measured_max_n"] == 1000
    assert finalize["predicted_10k_s"] == pytest.approx(10.1, abs=0.05)
    assert finalize["per_participant_ms_at_max_n"] == pytest.approx(1.1)
    assert finalize["n_exceeding_gateway_30s"] == pytest.approx(29900, rel=0.011)
    assert steps["submit (wall)"]["n_exceeding_gateway_30s"] is None
    write_set = steps["FinalizeRound write set (update records only, est.)"]
    assert write_set["predicted_10k_bytes"] == 1500 * fits.EXTRAPOLATE_TO


def test_phase_stats_count_failures_and_percentiles() -> None:
    phase = phases.Phase(n=4, latencies=[0.1, 0.2, 0.3], errors=["boom"], wall=1.5, timed_out=False, results=[])
    stats = phase.stats("submit")
    assert stats["submit_ok"] == 3
    assert stats["submit_errors"] == 1
    assert stats["submit_tps"] == 2.0
    assert stats["submit_p50_ms"] == 200.0
    with pytest.raises(phases.StepFailed, match="1 of 4 failed, e.g. boom") as failed:
        phases.check_phase("SubmitUpdate", phase, 10)
    assert failed.value.step == "SubmitUpdate"


def test_run_concurrently_keeps_each_result_and_counts_errors() -> None:
    def fail() -> int:
        raise ValueError("no")

    phase = phases.run_concurrently("test", [lambda: 1, fail, lambda: 3], workers=2, limit=30)
    assert phase.results == [1, None, 3]
    assert len(phase.latencies) == 2
    assert phase.errors == ["ValueError: no"]
    assert not phase.timed_out


def test_timed_call_turns_errors_and_time_outs_into_step_failures() -> None:
    assert phases.timed_call("Ok", lambda: 42, 30)[0] == 42
    with pytest.raises(phases.StepFailed, match="^CloseRound: after"):
        phases.timed_call("CloseRound", lambda: 1 / 0, 30)
    with pytest.raises(phases.StepFailed, match="no answer within the step limit"):
        phases.timed_call("FinalizeRound", lambda: time.sleep(0.5), 0.05)


def test_cpu_delta_groups_processes() -> None:
    before = {"peer0.org1": 1.0, "peer0.org2": 2.0, "ccserver1": 0.5}
    after = {"peer0.org1": 2.0, "peer0.org2": 4.0, "ccserver1": 1.5, "ccserver2": 3.0}
    assert cpu_delta(before, after) == {"peer": 3.0, "ccserver": 1.0}  # a new process counts from its first reading


def test_the_in_process_verdict_rejects_the_sign_flipped_updates() -> None:
    updates, bad = make_updates(20, 0.2, np.random.default_rng(3))
    rules = Rules()
    records = [
        SimpleNamespace(
            participant=f"p{i}",
            features=update_features(decode(data), sketch_dim=rules.sketch_dim),
            samples=100,
            epsilon=0.001,
            status="accepted",
            weight=1,
        )
        for i, data in enumerate(updates)
    ]
    assert sum(bad) == 4
    rejected = verdict_in_process(2, rules, records, previous=records)
    assert {f"p{i}" for i, is_bad in enumerate(bad) if is_bad} <= rejected
    assert len(rejected) < 10


def _report() -> dict[str, object]:
    rows = [
        {**_row("fabric", 10), "submit_tps": 20.0, "malicious_rejected": 1, "honest_rejected": 0, "load_1min": 1.5},
        {**_row("fabric", 1000), "submit_tps": 40.0, "malicious_rejected": 100, "honest_rejected": 2},
        {
            "backend": "fabric",
            "n": 3000,
            "status": "failed",
            "failed_step": "FinalizeRound",
            "error": "FinalizeRound: no answer within the step limit of 300 s",
        },
    ]
    return {
        "command": "python -m fedledger.bench.scalability --quick",
        "machine": {"CPU": "test CPU"},
        "sizes": [10, 1000, 3000],
        "workers": 32,
        "malicious": 0.1,
        "step_limit": 300.0,
        "update_bytes": 102_800,
        "detector_version": "test",
        "rows": rows,
        "fits": fits.extrapolate(rows),
    }


def test_table_rows_follow_the_table_headers() -> None:
    rows = render.table_rows(_report()["rows"])  # type: ignore[arg-type]
    headers = [h for h, _k in render.TABLE]
    first = dict(zip(headers, rows[0], strict=True))
    assert first["N"] == 10
    assert first["submit/s"] == 20.0
    assert first["rejected (malicious/honest)"] == "1/0"
    failed = dict(zip(headers, rows[2], strict=True))
    assert failed["status"] == "failed"
    assert math.isnan(failed["FinalizeRound s"])
    assert failed["rejected (malicious/honest)"] == "—/—"


def test_break_summary_names_the_largest_round_and_the_failed_step() -> None:
    (line,) = render.break_summary(_report()["rows"])  # type: ignore[arg-type]
    assert line.startswith("- **fabric**: largest complete round N = 1000; broke at N = 3000 in **FinalizeRound**")
    (ok,) = render.break_summary([_row("embedded", 10)])
    assert "every round size completed (largest N = 10)" in ok


def test_render_has_the_results_table_the_extrapolation_and_the_target() -> None:
    page = render.render(_report())
    assert "| " + " | ".join(h for h, _k in render.TABLE) + " |" in page
    assert "| fabric | 1000 | ok |" in page
    assert "## Extrapolation to 10,000 participants (on paper)" in page
    # Two complete rounds: the quadratic fit of FinalizeRound falls back to a line.
    assert "| fabric | FinalizeRound | 0.1 + 0.001·N s | 1000 | 1.1 | 1.1 | 10.1 |" in page
    assert "largest complete round on Fabric: N = 1000" in page
    assert "10 → 100 → 1,000: **met**" in page

"""The commit-latency study's pure parts: run statistics, cell medians, the target verdicts, the Prometheus
parsing, the page and the files it writes. No ledger is started."""

from __future__ import annotations

import csv
import json
import math

import pytest

from fedledger.bench.commit_latency import measure, probe, render
from fedledger.bench.commit_latency.measure import RunResult, median_row, plan_cells


def _run(latencies: list[float], *, run: int = 1, wall: float = 1.0, errors: int = 0) -> RunResult:
    return RunResult("embedded", 4, run, len(latencies) + errors, errors, latencies, wall, retried=run)


def test_run_statistics_are_in_milliseconds_and_commits_per_second() -> None:
    result = _run([0.010, 0.020, 0.030, 0.040], wall=2.0)
    assert result.ok == 4
    assert result.p(50) == pytest.approx(25.0)
    assert result.p(100) == pytest.approx(40.0)
    assert result.mean_ms == pytest.approx(25.0)
    assert result.throughput == pytest.approx(2.0)
    row = result.row()
    assert set(measure.STAT_KEYS) <= set(row)
    assert row["max_ms"] == 40.0
    assert row["committed"] == 4
    assert row["wall_s"] == 2.0


def test_a_run_without_commits_has_no_statistics() -> None:
    result = _run([], errors=3)
    assert math.isnan(result.p(50))
    assert math.isnan(result.mean_ms)
    assert result.throughput == 0.0
    assert math.isnan(result.row()["max_ms"])


def test_median_row_takes_the_median_of_each_statistic_and_sums_the_errors() -> None:
    runs = [
        _run([0.010] * 5, run=1, wall=1.0),
        _run([0.030] * 5, run=2, wall=0.5, errors=2),
        _run([0.020] * 5, run=3, wall=0.25),
    ]
    row = median_row(runs)
    assert row["run"] == "median"
    assert row["runs"] == 3
    assert row["p50_ms"] == 20.0
    assert row["throughput_tps"] == 10.0  # runs at 5, 10 and 20 commits/s
    assert row["errors"] == 2  # all runs together, not a median
    assert row["mvcc_retries"] == 2
    assert isinstance(row["n"], int)


def test_plan_cells_submit_at_least_min_n_and_per_client_per_worker() -> None:
    assert plan_cells([1, 10, 50], 60, 4) == [(1, 60), (10, 60), (50, 200)]


def _median(backend: str, concurrency: int, p50: float, tps: float) -> dict[str, object]:
    return {
        "backend": backend,
        "concurrency": concurrency,
        "runs": 3,
        "n": 60,
        "errors": 0,
        "p50_ms": p50,
        "p99_ms": p50 * 2,
        "mean_ms": p50,
        "throughput_tps": tps,
    }


def test_verdicts_judge_p50_at_concurrency_one_and_the_best_throughput() -> None:
    medians = [
        _median("embedded", 1, 1.4, 530.0),
        _median("embedded", 10, 16.5, 480.0),
        _median("fabric", 1, 235.4, 4.2),
        _median("fabric", 10, 250.0, 38.0),
    ]
    embedded, fabric = render.verdicts(medians)
    assert "p50 at concurrency 1 = 1.4 ms" in embedded
    assert embedded.count("**met**") == 2
    assert "best throughput 530 commits/s at concurrency 1" in embedded
    assert fabric.count("**missed**") == 2
    assert "best throughput 38 commits/s at concurrency 10" in fabric
    assert "concurrency 1 not measured" in render.verdicts([_median("x", 10, 1.0, 1.0)])[0]


def _report() -> dict[str, object]:
    medians = [_median("embedded", 1, 1.44, 529.7), _median("fabric (BatchTimeout 20ms)", 1, 60.5, 16.0)]
    return {
        "command": "python -m fedledger.bench.commit_latency",
        "machine": {"CPU": "test CPU", "cores (logical)": "2"},
        "update_bytes": 102_800,
        "repeats": 3,
        "elapsed_s": 12.0,
        "networks": ["fabric (BatchTimeout 20ms)"],
        "runs": [{**m, "run": 1} for m in medians],
        "medians": medians,
        "breakdown": {
            "fabric (BatchTimeout 20ms)": {
                "n": 5,
                "endorse_ms": 21.31,
                "submit_ms": 2.5,
                "commit_status_ms": 33.0,
                "total_ms": 56.81,
            }
        },
        "profile": {},
        "errors": [],
        "contract_compute": {"sha256": 0.051},
    }


def test_render_markdown_has_the_summary_table_breakdown_and_targets() -> None:
    page = render.render_markdown(_report())
    assert "| " + " | ".join(render.SUMMARY_HEADERS) + " |" in page
    assert "| embedded | 1 | 3 | 60 | 0 | 1.44 | 2.88 | 1.44 | 529.7 |" in page
    assert "| fabric (BatchTimeout 20ms) | 5 | 21.3 | 2.5 | 33.0 | 56.8 |" in page
    assert "| sha256 | 0.051 |" in page
    assert "Wall time of the whole benchmark: 12 s." in page
    assert "## Analysis" not in page
    assert "## Analysis\n\nnotes here" in render.render_markdown({**_report(), "notes": "notes here"})


def test_write_outputs_writes_runs_then_medians_breakdown_json_and_page(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(render, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(render, "PAGE", tmp_path / "bench-commit-latency.md")
    report = _report()
    written = render.write_outputs(report)
    assert [p.name for p in written] == [
        "commit_latency.csv",
        "commit_latency_breakdown.csv",
        "commit_latency.json",
        "bench-commit-latency.md",
    ]
    with (tmp_path / "results" / "commit_latency.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["runs"] for r in rows] == ["1", "1", "3", "3"]
    with (tmp_path / "results" / "commit_latency_breakdown.csv").open() as handle:
        (step,) = list(csv.DictReader(handle))
    assert step["total_ms"] == "56.81"
    assert json.loads((tmp_path / "results" / "commit_latency.json").read_text())["update_bytes"] == 102_800
    assert (tmp_path / "bench-commit-latency.md").read_text() == render.render_markdown(report)


def test_prometheus_samples_are_summed_by_label_with_prefix_match() -> None:
    text = "\n".join(
        [
            "# HELP endorser_proposal_duration The time to complete a proposal.",
            'endorser_proposal_duration_sum{chaincode="fedledger",success="true"} 1.5',
            'endorser_proposal_duration_sum{chaincode="fedledger",success="false"} 9',
            'chaincode_shim_request_duration_count{chaincode="fedledger_1.0:abc",type="GET_STATE"} 12',
            'chaincode_shim_request_duration_count{chaincode="fedledger_1.0:abc",type="PUT_STATE"} 4',
            "ledger_blockchain_height 7",
            "not a sample line",
        ]
    )
    samples = probe.parse_metrics(text)
    assert probe.total(samples, "endorser_proposal_duration_sum", chaincode="fedledger", success="true") == 1.5
    assert probe.total(samples, "endorser_proposal_duration_sum") == 10.5
    assert probe.total(samples, "chaincode_shim_request_duration_count", chaincode="fedledger_*") == 16
    assert probe.total(samples, "chaincode_shim_request_duration_count", type="GET_STATE") == 12
    assert probe.total(samples, "ledger_blockchain_height") == 7
    assert probe.total(samples, "ledger_blockchain_height", channel="mychannel") == 0


def test_contract_compute_profile_times_the_contracts_submit_path() -> None:
    steps = measure.contract_compute_profile(repeats=3)
    assert list(steps) == [
        "decode_payload (safetensors, manifest, finite)",
        "update_features (norms + count sketch)",
        "sha256",
    ]
    assert all(v >= 0 for v in steps.values())


def test_a_page_from_older_results_shows_the_command_as_it_is_typed_today() -> None:
    page = render.render_markdown({**_report(), "command": ".venv/bin/python bench/commit_latency.py --repeats 3"})
    assert "```\npython -m fedledger.bench.commit_latency --repeats 3\n```" in page

"""The aggregate-check study: its shapes, medians, table and page, the baseline contract, and one tiny run on an
embedded ledger (no timing is asserted)."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.bench.aggregate_check import measure, render
from fedledger.bench.aggregate_check.baseline import HASH_ONLY, BaselineContract
from fedledger.bench.aggregate_check.measure import CheckBench, CommitRun, bench_ledger, lora_shapes, median_rows
from fedledger.bench.ledgers import LedgerUnderTest
from fedledger.chaincode.contract import FedLedgerContract


def test_one_mib_update_is_two_rank_16_lora_pairs():
    shapes = lora_shapes(1.0)
    assert sum(a * b for a, b in shapes.values()) * 4 == 2**20
    assert shapes["layers.0.q_proj.lora_A"] == (16, 4096) and shapes["layers.1.q_proj.lora_B"] == (4096, 16)


def test_medians_per_cell_and_the_summary_puts_both_modes_side_by_side():
    runs = [CommitRun("embedded", 10, "checked", r, s, 1, 12.6) for r, s in enumerate([0.30, 0.10, 0.20], start=1)] + [
        CommitRun("embedded", 10, "hash-only", r, s, 1, 12.6) for r, s in enumerate([0.05, 0.15, 0.10], start=1)
    ]
    medians = median_rows(runs)
    assert [(m["mode"], m["median_s"], m["min_s"], m["max_s"], m["runs"]) for m in medians] == [
        ("checked", 0.2, 0.1, 0.3, 3),
        ("hash-only", 0.1, 0.05, 0.15, 3),
    ]
    (row,) = render.summary_rows(medians, 1.0)
    assert row == ["embedded", "10 x 1", 3, 0.1, "0.05-0.15", 0.2, "0.1-0.3", 0.1, 2.0, 1, 12.6]


def test_the_baseline_contract_adds_two_transactions_to_the_products():
    contract = BaselineContract()
    assert set(HASH_ONLY.values()) <= set(contract.submit_transactions())
    assert set(contract.submit_transactions()) - set(FedLedgerContract().submit_transactions()) == set(
        HASH_ONLY.values()
    )
    assert contract.transaction("CommitAggregateHashOnly").parameters == (
        "round_number",
        "update_hashes",
        "metrics",
        "inline_from",
    )


@pytest.fixture
def tiny_run(monkeypatch: pytest.MonkeyPatch):
    """The study on an embedded ledger: 2 and 3 updates of 16 KiB, one run per mode, chunks of 1024 values."""
    monkeypatch.setattr(measure, "RULES", {**measure.RULES, "aggregate_chunk_elements": 1024})
    shapes = lora_shapes(1 / 64)
    updates = measure.make_updates(shapes, 3, np.random.default_rng(0))
    ledger = LedgerUnderTest.embedded()
    report: dict = {"runs": []}
    try:
        bench = CheckBench(ledger, shapes, budget=40_000, workers=2)
        runs = bench_ledger(bench, [3, 2], 1, updates, report, progress=lambda _line: None)
        yield bench, runs, report
    finally:
        ledger.close()


def test_a_tiny_run_commits_every_round_in_both_modes(tiny_run):
    bench, runs, report = tiny_run
    assert [(r.n, r.mode) for r in runs] == [(2, "checked"), (2, "hash-only"), (3, "checked"), (3, "hash-only")]
    assert len(report["runs"]) == 4 and all(r.seconds > 0 for r in runs)
    assert all(r.transactions > 1 for r in runs)  # 4 chunks of 16 KiB updates do not fit a 40 kB proposal
    rounds = bench.aggregator.rounds()
    assert [r.status for r in rounds] == ["aggregated"] * 5  # the warm-up and the four timed rounds
    latest = bench.aggregator.latest_model()
    assert latest.version == 5 and len(latest.chunk_hashes) == 4


def test_the_page_has_the_table_and_the_setup(tiny_run):
    _bench, runs, report = tiny_run
    report = {
        **report,
        "command": "python -m fedledger.bench.aggregate_check",
        "machine": {"CPU": "test"},
        "update_mb": 1 / 64,
        "elements": 4096,
        "chunk_elements": 1024,
        "budget_mib": 0.04,
        "repeats": 1,
        "medians": median_rows(runs),
        "in_process": measure.in_process(
            [2, 3],
            measure.make_updates(lora_shapes(1 / 64), 3, np.random.default_rng(1)),
            lora_shapes(1 / 64),
            repeats=1,
        ),
    }
    page = render.render_markdown(report)
    assert "## CommitAggregate time" in page and "| embedded | 3 x 0.015625 |" in page
    assert "## In process" in page and "python -m fedledger.bench.aggregate_check" in page

"""The overhead study's pure parts: per-mode medians and ratios, the verdict, and the tables."""

from __future__ import annotations

import numpy as np

from fedledger.bench.overhead.measure import Run, Setup, max_abs_diff
from fedledger.bench.overhead.render import breakdown_table, explain, runs_table, summarize, summary_table, verdict


def _runs() -> list[Run]:
    runs = []
    for repeat, off_seconds in enumerate((100.0, 110.0, 120.0)):
        runs.append(Run("off", repeat, off_seconds, 0.628, 0.0, 15, cpu_seconds=off_seconds))
        steps = {"setup": 3.0, "local_training": 90.0, "submit": 0.5 + repeat, "finalize_round": 0.5}
        runs.append(Run("embedded", repeat, off_seconds * 1.02, 0.628, 0.0, 15, steps, cpu_seconds=off_seconds * 1.01))
        runs.append(Run("flower", repeat, off_seconds * 0.99, 0.628, 0.0, 15, max_abs_diff=1e-7, cpu_seconds=99.0))
    return runs


def test_summary_takes_medians_over_repeats_and_ratios_against_the_same_repeats_off_run():
    rows = {r["mode"]: r for r in summarize(_runs(), ["off", "embedded", "flower", "fabric"])}
    assert set(rows) == {"off", "embedded", "flower"}  # no fabric runs: no row
    assert rows["off"]["median_seconds"] == 110.0 and rows["off"]["ratio_vs_off"] == 1.0
    embedded = rows["embedded"]
    assert embedded["ratio_vs_off"] == 1.02 and embedded["cpu_ratio_vs_off"] == 1.01
    assert embedded["steps"] == {"setup": 3.0, "local_training": 90.0, "submit": 1.5, "finalize_round": 0.5}
    assert embedded["ledger_seconds"] == 2.0 and embedded["training_seconds"] == 90.0
    assert rows["flower"]["ledger_seconds"] is None and rows["flower"]["max_abs_diff_vs_off"] == 1e-7
    assert rows["off"]["accuracy_range"] == "0.6280-0.6280"


def test_verdict_needs_both_the_measured_and_the_predicted_ratio_within_the_target():
    rows = summarize(_runs(), ["off", "embedded", "flower"])
    text = verdict(rows)
    assert text.startswith("- ledger on (embedded) ≤ 1.03x ledger off: **met**: wall-time ratio 1.02x")
    assert "ratio predicted by the ledger's timed work 1.018x" in text and "flower" not in text
    slow = [r for r in _runs() if r.mode == "off"] + [
        Run("embedded", i, s, 0.6, 0.0, 15, {"submit": 10.0}) for i, s in enumerate((100.0, 110.0, 120.0))
    ]
    assert "**missed**" in verdict(summarize(slow, ["off", "embedded"]))  # ratio 1.0 but 10 s of ledger work


def test_tables_name_the_reference_and_the_steps():
    rows = summarize(_runs(), ["off", "embedded", "flower"])
    table = summary_table(rows)
    assert "| off | 3 | 110.0 | 1 (reference) |" in table and "| embedded | 3 | 112.2 | 1.02 |" in table
    assert "| submit | 1.5 |" in breakdown_table(rows)
    assert "embedded: +2.20 s wall over ledger off (median)" in explain(rows)
    assert runs_table(_runs()).count("\n") == 2 + 9 - 1


def test_max_abs_diff_compares_adapters():
    a = {"x": np.zeros(3, np.float32)}
    assert max_abs_diff(a, {"x": np.array([0, -0.5, 0.25], np.float32)}) == 0.5
    assert max_abs_diff(a, {"y": np.zeros(3, np.float32)}) == float("inf")
    assert Setup(model="tiny-bert", rounds=3, members=5, epochs=1).max_length == 64

"""The robustness study's pure parts (grid, summaries, tables, targets) and one tiny real cell."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest

from fedledger.bench.harness import current_command
from fedledger.bench.robustness.grid import CellStore, Setup, cell_key, grid
from fedledger.bench.robustness.summary import headline_table, per_round, pooled, summarise, targets

SMALL = Setup(attacks=("scaling",), defences=("fedledger", "krum", "median", "fedavg"), fractions=(0.2,))


def _cell(seed: int, attack: str, defence: str, accuracies: list[float], **per_round_values: list[float]) -> dict:
    rounds = []
    for i, accuracy in enumerate(accuracies):
        row = {"round": i + 1, "accuracy": accuracy, "precision": 0.5, "recall": 0.5, "f1": 0.5, "loss": 0.7}
        row.update({k: v[i] for k, v in per_round_values.items()})
        rounds.append(row)
    fraction = 0.0 if attack == "none" else 0.2
    return {
        "seed": seed,
        "attack": attack,
        "fraction": fraction,
        "defence": defence,
        "malicious": [] if attack == "none" else [3, 7],
        "majority": 0.628,
        "client_samples": [10] * 10,
        "rounds": rounds,
        "seconds": 1.0 + seed,
    }


def _cells() -> list[dict]:
    nan = float("nan")
    cells = []
    for seed, shift in ((0, 0.0), (1, 0.02), (2, 0.04)):
        cells += [
            _cell(seed, "none", "fedavg", [0.6, 0.90 + shift]),
            _cell(seed, "none", "fedledger", [0.6, 0.89 + shift], tpr=[nan, nan], fpr=[0.0, 0.1]),
            _cell(seed, "scaling", "fedledger", [0.6, 0.89 + shift], tpr=[1.0, 0.5 + shift], fpr=[0.0, 0.0]),
            _cell(seed, "scaling", "krum", [0.6, 0.70], tpr=[1.0, 1.0], fpr=[0.875, 0.875]),
            _cell(seed, "scaling", "median", [0.6, 0.91]),
            _cell(seed, "scaling", "fedavg", [0.6, 0.628]),
        ]
    return cells


def test_grid_runs_no_attack_first_then_fraction_attack_defence():
    assert grid(SMALL) == [
        ("none", 0.0, "fedledger"),
        ("none", 0.0, "krum"),
        ("none", 0.0, "median"),
        ("none", 0.0, "fedavg"),
        ("scaling", 0.2, "fedledger"),
        ("scaling", 0.2, "krum"),
        ("scaling", 0.2, "median"),
        ("scaling", 0.2, "fedavg"),
    ]


def test_cell_keys_ignore_the_grids_extent_and_name_the_detector_only_for_fedledger():
    wider = Setup(attacks=("scaling", "alie"), fractions=(0.1, 0.2))
    assert cell_key(SMALL, 0, "scaling", 0.2, "krum", "abc") == cell_key(wider, 0, "scaling", 0.2, "krum", "xyz")
    assert cell_key(SMALL, 0, "scaling", 0.2, "fedledger", "abc").endswith("|fedledger|abc")
    other = Setup(epochs=1)
    assert cell_key(SMALL, 0, "scaling", 0.2, "median", "-") != cell_key(other, 0, "scaling", 0.2, "median", "-")
    assert Setup.from_record(json.loads(json.dumps(asdict(wider)))) == wider  # as the results JSON stores it


def test_cell_store_keeps_cells_across_instances_and_selects_in_grid_order(tmp_path):
    store = CellStore(tmp_path / "cells.jsonl")
    cells = _cells()
    for cell in reversed(cells[:6]):  # seed 0, stored in reverse order
        store.add(cell_key(SMALL, 0, cell["attack"], cell["fraction"], cell["defence"], "d1"), cell)
    again = CellStore(tmp_path / "cells.jsonl")
    chosen = again.select(SMALL, [0], "d1")
    assert [(c["attack"], c["defence"]) for c in chosen] == [
        ("none", "fedledger"),
        ("none", "fedavg"),
        ("scaling", "fedledger"),
        ("scaling", "krum"),
        ("scaling", "median"),
        ("scaling", "fedavg"),
    ]
    assert again.select(SMALL, [0], "d2")[0]["defence"] == "fedavg"  # fedledger cells of another detector: absent


def test_summaries_take_medians_over_seeds_of_final_rounds_and_pooled_rates():
    rows = {(r["attack"], r["defence"]): r for r in summarise(_cells())}
    mine = rows[("scaling", "fedledger")]
    assert mine["seeds"] == 3 and mine["malicious"] == 2
    assert mine["accuracy"] == pytest.approx(0.91)  # final rounds 0.89, 0.91, 0.93
    assert mine["tpr"] == pytest.approx((1.0 + 0.52) / 2)  # pooled per seed 0.75, 0.76, 0.77 -> median 0.76
    assert mine["fpr"] == 0.0 and mine["seconds"] == 2.0
    assert math.isnan(rows[("scaling", "median")]["tpr"])  # no per-update verdict
    assert math.isnan(rows[("none", "fedledger")]["tpr"]) and rows[("none", "fedledger")]["fpr"] == 0.05
    assert pooled(_cells()[3], "fpr") == 0.875


def test_headline_table_shows_rates_only_for_judging_defences():
    headers, table = headline_table(summarise(_cells()), SMALL)
    assert headers == ["attack", "fedledger", "krum", "median", "fedavg"]
    assert table[0] == ["none", "0.910 (n/a/0.05)", "—", "—", "0.920"]
    assert table[1] == ["scaling", "0.910 (0.76/0.00)", "0.700 (1.00/0.88)", "0.910", "0.628"]


def test_targets_compare_with_no_attack_fedavg_and_the_detection_goal():
    met = targets(summarise(_cells()), SMALL)
    accuracy, detection = met
    assert (
        accuracy[1] is True
        and "no attacker: 0.920" in accuracy[0]
        and "worst: scaling 0.910 (-1.0 points)" in accuracy[2]
    )
    assert detection[1] is False and "scaling 0.76/0.00" in detection[2] and "FPR without attack 0.05" in detection[2]


def test_per_round_rows_flatten_cells():
    rows = per_round([_cells()[2]])
    assert [r["round"] for r in rows] == [1, 2]
    assert rows[0]["malicious"] == "3 7" and rows[0]["tpr"] == 1.0 and rows[0]["rejected"] == ""


def test_stored_commands_are_upgraded_to_the_module_form():
    old = "python bench/robustness.py --seeds 0 --extra-seeds 1 2"
    assert current_command(old) == "python -m fedledger.bench.robustness --seeds 0 --extra-seeds 1 2"
    assert (
        current_command("python -m fedledger.bench.robustness --quick")
        == "python -m fedledger.bench.robustness --quick"
    )


@pytest.mark.slow
def test_robustness_cell_smoke():
    """One tiny cell of each kind: the detector's verdict and the baselines' selections line up."""
    pytest.importorskip("peft")
    from fedledger.bench.robustness.measure import SeedRun

    run = SeedRun(Setup(clients=5, rounds=1, epochs=1), seed=0)
    scaled = run.cell("scaling", 0.2, "fedledger")
    assert len(scaled.malicious) == 1 and len(scaled.rounds) == 1
    row = scaled.rounds[0]
    assert 0.0 <= row["accuracy"] <= 1.0 and row["tpr"] in (0.0, 1.0) and 0.0 <= row["fpr"] <= 1.0
    krum_cell = run.cell("scaling", 0.2, "krum")
    assert len(krum_cell.rounds[0]["rejected"]) == 4  # Krum keeps one update of five
    assert run.cell("none", 0.0, "median").rounds[0].get("tpr") is None  # no per-update verdict
    assert run.cache_hits > 0  # round 1 is trained once and shared by every cell

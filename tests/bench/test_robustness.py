"""The robustness study's pure parts (grid, work split, declared samples, summaries, tables, targets) and one
tiny real cell."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from fractions import Fraction

import pytest

from fedledger.bench.harness import current_command
from fedledger.bench.robustness import grid as grid_module
from fedledger.bench.robustness.grid import (
    ADAPTIVE_ATTACKS,
    CellStore,
    Setup,
    cell_key,
    detector_key,
    detector_sources,
    estimate_seconds,
    grid,
    work_units,
)
from fedledger.bench.robustness.summary import (
    accuracy_table,
    discrimination,
    discrimination_table,
    per_round,
    pooled,
    summarise,
    target_table,
    targets,
)

SMALL = Setup(attacks=("scaling", "min_max"), defences=("fedledger", "krum", "median", "fedavg"), fractions=(0.2,))


def _cell(
    seed: int, attack: str, defence: str, accuracies: list[float], fraction: float = 0.2, **per_round_values: list
) -> dict:
    rounds = []
    for i, accuracy in enumerate(accuracies):
        row = {"round": i + 1, "accuracy": accuracy, "precision": 0.5, "recall": 0.5, "f1": 0.5, "loss": 0.7}
        row.update({k: v[i] for k, v in per_round_values.items()})
        rounds.append(row)
    return {
        "seed": seed,
        "attack": attack,
        "fraction": 0.0 if attack == "none" else fraction,
        "defence": defence,
        "malicious": [] if attack == "none" else [3, 7, 11, 15],
        "majority": 0.628,
        "client_samples": [10] * 20,
        "declared": [10] * 20,
        "rounds": rounds,
        "seconds": 1.0 + seed,
    }


def _cells() -> list[dict]:
    nan = float("nan")
    cells = []
    for seed, shift in ((0, 0.0), (1, 0.02), (2, 0.04)):
        cells += [
            _cell(seed, "none", "fedavg", [0.90, 0.90 + shift], malicious_weight=[0.0, 0.0]),
            _cell(seed, "none", "fedledger", [0.88, 0.89 + shift], tpr=[nan, nan], fpr=[0.0, 0.1]),
            _cell(seed, "scaling", "fedledger", [0.9, 0.89 + shift], tpr=[1.0, 0.5 + shift], fpr=[0.0, 0.0]),
            _cell(seed, "scaling", "krum", [0.6, 0.70], tpr=[1.0, 1.0], fpr=[0.875, 0.875]),
            _cell(seed, "scaling", "median", [0.6, 0.91]),
            _cell(seed, "scaling", "fedavg", [0.5, 0.628], malicious_weight=[0.8, 0.8]),
            _cell(seed, "min_max", "fedledger", [0.9, 0.80 + shift], tpr=[0.0, 0.0], fpr=[0.0, 0.0]),
            _cell(seed, "min_max", "krum", [0.9, 0.85], tpr=[1.0, 1.0], fpr=[0.9, 0.9]),
            _cell(seed, "min_max", "median", [0.9, 0.75]),
            _cell(seed, "min_max", "fedavg", [0.9, 0.86 + shift], malicious_weight=[0.8, 0.8]),
        ]
    return cells


def test_grid_runs_no_attack_first_then_fraction_attack_defence():
    small = Setup(attacks=("scaling",), defences=("fedledger", "median"), fractions=(0.2, 0.3))
    assert grid(small) == [
        ("none", 0.0, "fedledger"),
        ("none", 0.0, "median"),
        ("scaling", 0.2, "fedledger"),
        ("scaling", 0.2, "median"),
        ("scaling", 0.3, "fedledger"),
        ("scaling", 0.3, "median"),
    ]


def test_the_default_grid_has_the_adaptive_attacks_and_the_stronger_baselines():
    setup = Setup()
    assert setup.clients >= 20 and set(ADAPTIVE_ATTACKS) == {"min_max", "min_sum", "sybil", "under_threshold"}
    assert set(ADAPTIVE_ATTACKS) <= set(setup.attacks) and setup.fractions == (0.2, 0.3)
    assert {"fedavg", "fedledger", "krum", "multikrum", "median", "trmean"} <= set(setup.defences)
    assert len(setup.defences) == 10


def test_cell_keys_ignore_the_grids_extent_and_name_the_detector_where_it_matters():
    wider = Setup(attacks=("scaling", "alie"), fractions=(0.1, 0.2))
    assert cell_key(SMALL, 0, "scaling", 0.2, "krum", "abc") == cell_key(wider, 0, "scaling", 0.2, "krum", "xyz")
    assert cell_key(SMALL, 0, "scaling", 0.2, "fedledger", "abc").endswith("|fedledger|abc")
    # the detector-aware attack's updates depend on the detector, whatever the defence
    assert cell_key(SMALL, 0, "under_threshold", 0.2, "krum", "abc").endswith("|krum|abc")
    other = Setup(epochs=1)
    assert cell_key(SMALL, 0, "scaling", 0.2, "median", "-") != cell_key(other, 0, "scaling", 0.2, "median", "-")
    assert Setup.from_record(json.loads(json.dumps(asdict(wider)))) == wider  # as the results JSON stores it


def test_the_detector_key_covers_every_anomaly_module_and_the_verdicts(tmp_path, monkeypatch):
    sources = detector_sources()
    anomaly = [p for p in sources if p.parent.name == "anomaly"]
    assert [p.name for p in anomaly] == sorted(p.name for p in anomaly[0].parent.glob("*.py"))
    assert sources[-1].name == "verdicts.py" and sources[-1].parent.name == "chaincode"
    files = [tmp_path / "a.py", tmp_path / "verdicts.py"]
    for f in files:
        f.write_text("x = 1\n")
    monkeypatch.setattr(grid_module, "detector_sources", lambda: files)
    before = detector_key()
    added = tmp_path / "b.py"
    added.write_text("y = 2\n")
    monkeypatch.setattr(grid_module, "detector_sources", lambda: [files[0], added, files[1]])
    assert detector_key() != before  # a new module of the detector is a new detector


def test_work_units_split_each_seed_by_whole_attacks_and_cover_the_grid_once():
    setup = Setup()
    units = work_units(setup, [0, 1, 2], parts=2)
    assert [seed for seed, _ in units] == [0, 0, 1, 1, 2, 2]
    for seed in (0, 1, 2):
        parts = [cells for s, cells in units if s == seed]
        assert sorted(c for cells in parts for c in cells) == sorted(grid(setup))
        attacks = [{a for a, _, _ in cells} for cells in parts]
        assert not attacks[0] & attacks[1]  # an attack's cells share one process (and its caches)
        loads = [estimate_seconds(setup, cells) for cells in parts]
        assert max(loads) / min(loads) < 1.2
        assert parts[0] == [c for c in grid(setup) if c in parts[0]]  # grid order kept
    assert work_units(setup, [4], parts=1) == [(4, grid(setup))]


def test_malicious_clients_declare_what_makes_their_capped_share_bind():
    from fedledger.bench.robustness.measure import declared_samples, participant
    from fedledger.chaincode.records import Rules
    from fedledger.chaincode.weights import WEIGHT_UNITS, capped_shares, round_weights

    samples = [10, 30, 5, 20, 15, 40]
    bad = [1, 4]
    rules = Rules()
    declared = declared_samples(samples, bad, rules, inflate=True)
    honest_total = 10 + 5 + 20 + 40
    assert declared == [10, honest_total, 5, 20, honest_total, 40]  # caps 0.5: the honest total
    assert declared_samples(samples, bad, rules, inflate=False) == samples
    assert declared_samples(samples, [], rules, inflate=True) == samples
    honest = {participant(c): samples[c] for c in range(6) if c not in bad}
    alone = {**honest, participant(1): declared[1]}  # one attacker accepted: exactly the cap
    assert capped_shares(alone, participant_cap=0.5, organisation_cap=0.5).shares[participant(1)] == Fraction(1, 2)
    smaller = {**honest, participant(1): declared[1] - 1}
    assert capped_shares(smaller, participant_cap=0.5, organisation_cap=0.5).shares[participant(1)] < Fraction(1, 2)
    both = round_weights({participant(c): declared[c] for c in range(6)}, participant_cap=0.5, organisation_cap=0.5)
    assert (both[participant(1)] + both[participant(4)]) / WEIGHT_UNITS == pytest.approx(2 / 3, abs=1e-6)
    tighter = Rules(max_participant_share=0.5, max_organisation_share=0.2)
    assert declared_samples(samples, bad, tighter, inflate=True)[1] == math.ceil(honest_total * 0.2 / 0.8)


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


def test_summaries_take_means_and_spreads_over_seeds():
    rows = {(r["attack"], r["defence"]): r for r in summarise(_cells())}
    mine = rows[("scaling", "fedledger")]
    assert mine["seeds"] == 3 and mine["malicious"] == 4
    assert mine["accuracy"] == pytest.approx(0.91)  # final rounds 0.89, 0.91, 0.93
    assert (mine["accuracy_min"], mine["accuracy_max"]) == pytest.approx((0.89, 0.93))
    assert mine["accuracy_std"] == pytest.approx(math.sqrt(0.02**2 * 2 / 3))
    assert mine["accuracy_rounds"] == pytest.approx((0.895 + 0.905 + 0.915) / 3)
    assert mine["tpr"] == pytest.approx((0.75 + 0.76 + 0.77) / 3)  # pooled per seed, then the mean
    assert mine["tpr_worst_round"] == 0.5 and mine["fpr_worst_round"] == 0.0
    assert mine["fpr"] == 0.0 and mine["seconds"] == 2.0
    assert rows[("scaling", "fedavg")]["malicious_weight"] == pytest.approx(0.8)
    assert math.isnan(rows[("scaling", "median")]["tpr"])  # no per-update verdict
    assert math.isnan(rows[("none", "fedledger")]["tpr"]) and rows[("none", "fedledger")]["fpr"] == pytest.approx(0.05)
    assert pooled(_cells()[3], "fpr") == 0.875


def test_the_discrimination_table_measures_undefended_fedavg_against_the_clean_run():
    rows = summarise(_cells())
    found = {d["attack"]: d for d in discrimination(rows, SMALL)}
    assert found["scaling"]["cost"] == pytest.approx(100 * (0.92 - 0.628))  # clean mean final 0.92
    assert found["scaling"]["met"] and not found["min_max"]["met"]  # 0.88: 4 points
    assert found["min_max"]["cost_rounds"] == pytest.approx(100 * (0.91 - 0.89))
    headers, table = discrimination_table(rows, SMALL)
    assert headers[0] == "attack" and len(table) == 2
    assert table[0][:6] == ["scaling", "20 % (4)", "0.80", "0.920 (0.90-0.94)", "0.628 (0.63-0.63)", "+29.2"]
    assert table[0][-1] == "**yes**" and table[1][-1] == "**no**"


def test_a_backdoor_meets_the_bar_by_its_attack_success_rate():
    setup = Setup(attacks=("backdoor",), defences=("fedavg",), fractions=(0.2,))
    cells = [
        _cell(0, "none", "fedavg", [0.9, 0.9], attack_success=[0.1, 0.1]),
        _cell(0, "backdoor", "fedavg", [0.9, 0.88], attack_success=[0.4, 0.6]),
    ]
    (only,) = discrimination(summarise(cells), setup)
    assert only["cost"] == pytest.approx(2.0) and only["asr"] == 0.6 and only["met"]
    assert discrimination_table(summarise(cells), setup)[1][0][9] == "0.60 (0.10)"


def test_targets_per_fraction_compare_with_the_clean_run_detection_and_every_baseline():
    met = targets(summarise(_cells()), SMALL)
    assert len(met) == 3
    accuracy, detection, adaptive = met
    assert accuracy[0].startswith("20 %: ") and "clean run (0.920)" in accuracy[0]
    assert accuracy[1] is False and "min_max 0.820 (-10.0)" in accuracy[2]
    assert detection[1] is False and "scaling 0.76/0.00" in detection[2] and "FPR without attack 0.05" in detection[2]
    assert adaptive[1] is False and "min_max: fedledger 0.820, best baseline fedavg 0.880" in adaptive[2]
    _headers, table = target_table(summarise(_cells()), SMALL)
    assert [line[0] for line in table] == ["scaling", "min_max"]
    assert table[0][4] == "yes" and table[1][4] == "**no**" and table[1][-1] == "**no**"
    rows = {(r["attack"], r["defence"]): r for r in summarise(_cells()) if r["fraction"] == 0.2}
    weights = (
        f"{rows['scaling', 'fedledger']['malicious_weight']:.2f} / {rows['scaling', 'fedavg']['malicious_weight']:.2f}"
    )
    assert table[0][7] == weights


def test_accuracy_tables_show_mean_and_std_with_the_clean_run_first():
    headers, table = accuracy_table(summarise(_cells()), SMALL, 0.2)
    assert headers == ["attack", "fedledger", "krum", "median", "fedavg"]
    assert table[0] == ["none", "0.910 ±0.02", "—", "—", "0.920 ±0.02"]
    assert table[1] == ["scaling", "0.910 ±0.02", "0.700 ±0.00", "0.910 ±0.00", "0.628 ±0.00"]


def test_per_round_rows_flatten_cells():
    rows = per_round([_cells()[2]])
    assert [r["round"] for r in rows] == [1, 2]
    assert rows[0]["malicious"] == "3 7 11 15" and rows[0]["tpr"] == 1.0 and rows[0]["rejected"] == ""


def test_stored_commands_are_upgraded_to_the_module_form():
    old = "python bench/robustness.py --seeds 0 --extra-seeds 1 2"
    assert current_command(old) == "python -m fedledger.bench.robustness --seeds 0 --extra-seeds 1 2"
    assert (
        current_command("python -m fedledger.bench.robustness --quick")
        == "python -m fedledger.bench.robustness --quick"
    )


@pytest.mark.slow
def test_robustness_cell_smoke():
    """Tiny real cells: the detector's verdict, the baselines' selections, the declared weights, the oracle."""
    pytest.importorskip("peft")
    from fedledger.bench.robustness.measure import SeedRun

    run = SeedRun(Setup(clients=5, warm_rounds=1, rounds=1, epochs=1), seed=0)
    scaled = run.cell("scaling", 0.2, "fedledger")
    assert len(scaled.malicious) == 1 and len(scaled.rounds) == 1
    row = scaled.rounds[0]
    assert 0.0 <= row["accuracy"] <= 1.0 and row["tpr"] in (0.0, 1.0) and 0.0 <= row["fpr"] <= 1.0
    bad = scaled.malicious[0]
    assert scaled.declared[bad] == sum(n for c, n in enumerate(scaled.client_samples) if c != bad)
    undefended = run.cell("scaling", 0.2, "fedavg")
    assert undefended.rounds[0]["malicious_weight"] == pytest.approx(0.5)  # its capped share binds
    krum_cell = run.cell("scaling", 0.2, "krum")
    assert len(krum_cell.rounds[0]["rejected"]) == 4  # Krum keeps one update of five
    tuned = run.cell("under_threshold", 0.2, "nnm_trmean")
    assert tuned.rounds[0]["attack_gamma"] >= 0.0 and "tpr" not in tuned.rounds[0]


def test_the_honest_dp_target_counts_false_rejections_over_every_seed():
    from fedledger.bench.robustness.summary import honest_dp_target

    runs = [
        {"seed": 0, "epsilon": 8.0, "judged": 100, "rejected": 3},
        {"seed": 1, "epsilon": 8.0, "judged": 100, "rejected": 4},
    ]
    statement, met, numbers = honest_dp_target(runs)
    assert met and "epsilon = 8" in statement and numbers.startswith("7/200 = 3.5%")
    runs[1]["rejected"] = 8
    assert honest_dp_target(runs)[1] is False  # 11/200 = 5.5 %
    assert honest_dp_target([])[1] is False  # nothing judged proves nothing


@pytest.mark.slow
def test_honest_members_under_dp_are_screened_and_counted():
    """A tiny real run: every client trains with DP-SGD, the contract judges each update once per round."""
    pytest.importorskip("opacus")
    from fedledger.bench.robustness.measure import run_honest_dp

    result = run_honest_dp(Setup(clients=5, warm_rounds=1, rounds=2, epochs=1), seed=0, epsilon=8.0)
    assert [r["judged"] for r in result["rounds"]] == [5, 5]
    assert result["judged"] == 10 and result["rejected"] == sum(len(r["rejected"]) for r in result["rounds"])
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in result["rounds"])

"""Round time, shared vs plaintext: the quick cells on the embedded ledger, both modes end to end (no timing is
asserted)."""

from __future__ import annotations

from fedledger.bench.shares import cli, render
from fedledger.bench.shares.round import run_round_part

#: The robust weighting reads each mode's own sketches; off, both modes weigh the members alike.
PLAIN_WEIGHTS = {"weight_norm_clip": False, "weight_direction": False, "weight_diversity": False}


def _part(rules=None):
    quick = cli.QUICK
    return run_round_part(
        dims=[int(quick["round_dims"])],
        members=[int(n) for n in quick["round_members"].split(",")],
        repeats=quick["round_repeats"],
        seed=3,
        rules=rules,
    )


def test_both_modes_commit_the_same_model_and_count_their_bytes():
    part = _part(PLAIN_WEIGHTS)
    assert [c["n"] for c in part["cells"]] == [5, 10]
    for cell in part["cells"]:
        plain, shared = cell["plaintext"], cell["shared"]
        assert plain["accepted"] == shared["accepted"] == cell["n"] and cell["same_accepted_repeats"] == 1
        assert cell["max_weight_gap"] == 0 and cell["max_shared_vs_plaintext"] <= 1e-6
        assert cell["max_model_error"] <= 1e-6
        # plaintext: the encoded float32 update; shared: two sealed shares of 8-byte words and two commitments
        assert 4 * cell["d"] < plain["bytes_per_member"] < 4 * cell["d"] + 4096
        assert 0 < shared["bytes_per_member"] - 2 * 8 * cell["d"] < 2 * 600
        assert shared["commitment_bytes_per_member"] == 2 * 64
        assert shared["sketch_tx_s"] > 0 and shared["sum_tx_s"] > 0 and plain["sketch_tx_s"] == plain["sum_tx_s"] == 0
        assert cell["ratio"] > 0 and cell["met"] == (cell["ratio"] <= part["target"])


def test_the_default_rules_still_give_each_model_its_ledger_weighted_mean_and_render_a_section():
    part = _part()
    assert all(c["max_model_error"] <= 1e-6 for c in part["cells"])
    part |= {"command": "python -m fedledger.bench.shares --quick --parts round", "machine": {"CPU": "test"}}
    part["elapsed_s"] = 1.0
    heading, body = render.round_section(part)
    assert heading == "Round time, shared vs plaintext"
    rows = render.round_time_rows(part)
    assert len(rows) == 4 and {r[2] for r in rows} == {"plaintext", "shared"}
    assert all(r[16] in ("**met**", "**missed**") and r[18] > 0 for r in rows if r[2] == "shared")
    assert len(render.round_csv_rows(part)) == 4 and "Both modes committed a model" in body

"""The shares study: its shapes, weights and error measures, and one tiny run end to end (no timing is asserted)."""

from __future__ import annotations

import numpy as np

from fedledger.bench.shares import measure, render
from fedledger.chaincode.weights import WEIGHT_UNITS


def test_lora_shapes_are_eight_rank_8_tensors_of_about_d_values():
    shapes = measure.lora_shapes(100_000)
    assert len(shapes) == 8 and shapes["layers.0.q_proj.lora_A"] == (8, 1562)
    assert 99_000 < sum(a * b for a, b in shapes.values()) <= 100_000


def test_integer_weights_are_unequal_and_sum_to_the_contracts_units():
    weights = measure.integer_weights(7)
    assert sum(weights) == WEIGHT_UNITS and len(set(weights)) == 7 and all(isinstance(w, int) for w in weights)


def test_sketch_errors_are_zero_for_exact_sketches_and_grow_with_distortion():
    rng = np.random.default_rng(0)
    updates = [{"x": rng.standard_normal(40)} for _ in range(4)]
    exact = np.stack([u["x"] for u in updates])
    same = measure.sketch_errors(updates, exact)
    assert same["norm_rel_error_median"] < 1e-12 and same["cosine_abs_error_median"] < 1e-12 and same["pairs"] == 6
    scaled = measure.sketch_errors(updates, exact * 1.1)
    assert abs(scaled["norm_rel_error_median"] - 0.1) < 1e-9 and scaled["cosine_abs_error_median"] < 1e-12


def test_the_seed_depends_on_every_commitment_but_not_their_order():
    a, b, c = "aa" * 32, "bb" * 32, "cc" * 32
    assert measure.round_seed([a, b, c]) == measure.round_seed([c, a, b])
    assert measure.round_seed([a, b, c]) != measure.round_seed([a, b, "cd" * 32])


def test_a_tiny_run_fills_every_table_and_the_decoded_mean_is_exact_to_fixed_point():
    report = {
        "command": "python -m fedledger.bench.shares --tiny",
        "machine": {"CPU": "test"},
        "members": [3, 4],
        "repeats": 1,
        **measure.run_study(dims=[2000], orgs=[2, 3], members=[3, 4], repeats=1, seed=0),
    }
    assert len(report["cells"]) == 2 and len(report["rounds"]) == 4 and len(report["accuracy"]) == 1
    assert all(c["max_mean_error"] <= 2.0**-33 * 1.01 for c in report["cells"])
    # K sealed shares of 8-byte words, each with a header, a binding and HPKE's 48 bytes (under 600 in all).
    for cell in report["cells"]:
        assert 0 < cell["bytes_shares"] - cell["k"] * 8 * cell["d"] < cell["k"] * 600
    page = render.render_markdown(report)
    for heading in ("Per member and per share", "Per round", "Sketch accuracy"):
        assert heading in page
    assert len(render.round_rows(report)) == 4 and render.accuracy_rows(report)[0][-1] in ("**met**", "**missed**")

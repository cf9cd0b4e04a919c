"""What leaks (the shares study's leak measurement): the sketch matrix is the detector's sketch, the least-squares
attack is least squares, and at a tiny size the attacks beat the baselines where they should and the one-share
attacks do not (no timing is asserted)."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.anomaly.features import SKETCH_BLOCKS, count_sketch
from fedledger.bench.shares import leak, measure, render

SHAPES = {"b.weight": (3, 50), "a.bias": (7,), "c.lora_A": (40,)}


def test_the_sketch_map_gives_count_sketch_for_every_unit_vector():
    rows, signs = leak.sketch_map(SHAPES, 64, seed=11, blocks=SKETCH_BLOCKS)
    a = leak.sketch_matrix(rows, signs, 64)
    sizes = {name: int(np.prod(shape)) for name, shape in SHAPES.items()}
    column = 0
    for name in sorted(SHAPES):
        for j in range(sizes[name]):
            unit = {n: np.zeros(SHAPES[n]) for n in SHAPES}
            unit[name].reshape(-1)[j] = 1.0
            np.testing.assert_array_equal(count_sketch(unit, 64, 11, SKETCH_BLOCKS), a[:, column])
            column += 1
    assert column == a.shape[1] == 197


def test_least_squares_is_the_minimum_norm_solution():
    rng = np.random.default_rng(1)
    x = leak.gaussian(rng, SHAPES)
    rows, signs = leak.sketch_map(SHAPES, 64, seed=3)
    sketch = count_sketch(x, 64, 3, SKETCH_BLOCKS)
    expected = np.linalg.lstsq(leak.sketch_matrix(rows, signs, 64), sketch, rcond=None)[0]
    np.testing.assert_allclose(leak.least_squares(sketch, rows, signs), expected, atol=1e-12)


def test_recovery_measures_are_perfect_for_the_truth_and_fail_for_zeros():
    x = np.array([3.0, -2.0, 0.0, 1.0, -0.5])
    assert leak.recovery(x, x) == {m: (0.0 if m == "rel_l2_error" else 1.0) for m in leak.METRICS}
    zeros = leak.recovery(x, np.zeros_like(x))
    assert zeros["cosine"] == 0.0 and zeros["rel_l2_error"] == 1.0 and zeros["within_10pct"] == 0.0
    assert zeros["sign_correct"] == 0.0
    flipped = leak.recovery(x, -x)
    assert flipped["cosine"] == -1.0 and flipped["sign_correct"] == 0.0


@pytest.fixture(scope="module")
def tiny() -> dict:
    cases = (
        ("review's 128 values", leak.REVIEW_UPDATE, (leak.GAUSSIAN, leak.SPARSE)),
        ("demo adapter", leak.DEMO_ADAPTER, (leak.GAUSSIAN,)),
    )
    return leak.run_leak(trials=3, seed=0, cases=cases)


def _row(report: dict, case: str, kind: str, attack: str) -> dict:
    found = next(c for c in report["cases"] if c["case"] == case and c["kind"] == kind)
    return next(r for r in found["rows"] if r["attack"] == attack)


def test_the_estimator_beats_the_baselines_on_128_values_and_one_share_does_not(tiny):
    case, kind = "review's 128 values", leak.GAUSSIAN
    estimator = _row(tiny, case, kind, "estimator")
    squares = _row(tiny, case, kind, "least squares")
    for baseline in ("zeros", "random"):
        row = _row(tiny, case, kind, baseline)
        assert estimator["cosine"] > row["cosine"] + 0.5 and squares["rel_l2_error"] < row["rel_l2_error"] - 0.3
        assert estimator["within_10pct"] > row["within_10pct"] + 0.4
    # 128 values in 512 buckets: most are alone in theirs and come back exactly.
    assert estimator["cosine"] > 0.8 and estimator["within_10pct"] > 0.6
    for attack in leak.SHARE_ATTACKS:
        row = _row(tiny, case, kind, attack)
        assert abs(row["cosine"]) < 0.3 and row["within_10pct"] < 0.05 and row["rel_l2_error"] > 1e6


def test_the_demo_adapter_leaks_less_than_128_values_and_omp_finds_a_sparse_update(tiny):
    demo = _row(tiny, "demo adapter", leak.GAUSSIAN, "least squares")
    review = _row(tiny, "review's 128 values", leak.GAUSSIAN, "least squares")
    assert demo["cosine"] < review["cosine"] - 0.2 and demo["within_10pct"] < 0.2
    assert _row(tiny, "review's 128 values", leak.SPARSE, "sparse (OMP)")["cosine"] > 0.8
    # The shares come from a CSPRNG: this fails in about 1e-5 of runs by chance.
    for case in tiny["cases"]:
        assert case["sketch_fixed_point_error_max"] < 1e-6 and case["share_uniform_p_min"] > 1e-6


def test_the_page_has_the_what_leaks_section(tiny):
    report = {
        "command": "python -m fedledger.bench.shares --tiny",
        "machine": {"CPU": "test"},
        "members": [3],
        "repeats": 1,
        **measure.run_study(dims=[500], orgs=[2], members=[3], repeats=1, seed=0),
        "leak": {**tiny, "command": "python -m fedledger.bench.shares --parts leak", "machine": {}, "elapsed_s": 1},
    }
    page = render.render_markdown(report)
    assert "## What leaks" in page and "### Demo adapter per tensor" in page and "bench/results/shares_leak.csv" in page
    assert len(render.leak_rows(report["leak"])) == sum(len(c["rows"]) for c in tiny["cases"])

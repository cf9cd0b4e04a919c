"""The baselines are byzfl's/Flower's aggregators over dicts of arrays, with honest selections."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.experiments.baselines import (
    BaselineStrategy,
    flatten,
    krum,
    median,
    multi_krum,
    robust_aggregate,
    trimmed_mean,
    unflatten,
)


def _updates(rng: np.random.Generator, honest: int = 7, attackers: int = 3) -> list[dict[str, np.ndarray]]:
    centre = rng.normal(size=6)
    rows = [centre + 0.05 * rng.normal(size=6) for _ in range(honest)]
    rows += [-5.0 * centre + 0.05 * rng.normal(size=6) for _ in range(attackers)]
    return [{"a": r[:4].reshape(2, 2).astype(np.float32), "b": r[4:].astype(np.float32)} for r in rows]


def test_flatten_roundtrip():
    updates = _updates(np.random.default_rng(0))
    matrix, template = flatten(updates)
    assert matrix.shape == (10, 6)
    back = unflatten(matrix[3], template)
    np.testing.assert_array_equal(back["a"], updates[3]["a"])
    with pytest.raises(ValueError, match="names and shapes"):
        flatten([updates[0], {"a": np.zeros((2, 2))}])


def test_krum_and_multikrum_pick_the_honest_cluster():
    updates = _updates(np.random.default_rng(1))
    chosen = krum(updates, f=3)
    assert chosen.selected is not None and chosen.selected[0] < 7
    np.testing.assert_array_equal(chosen.update["b"], updates[chosen.selected[0]]["b"])
    multi = multi_krum(updates, f=3)
    assert multi.selected == tuple(range(7))
    np.testing.assert_allclose(multi.update["a"], np.mean([u["a"] for u in updates[:7]], axis=0), rtol=1e-5)


def test_krum_names_the_first_of_identical_colluders():
    # Widely spread honest updates and three identical colluders: Krum's known weakness, it picks a colluder.
    rng = np.random.default_rng(2)
    honest = [{"a": rng.normal(0, 10, (2, 2)).astype(np.float32), "b": rng.normal(0, 10, 2)} for _ in range(4)]
    same = {"a": np.ones((2, 2), np.float32), "b": np.ones(2, np.float32)}
    assert krum([*honest, same, dict(same), dict(same)], f=3).selected == (4,)


def test_median_and_trimmed_mean_are_coordinatewise():
    updates = _updates(np.random.default_rng(3))
    stack = np.stack([u["a"] for u in updates]).astype(np.float64)
    result = median(updates)
    assert result.selected is None
    np.testing.assert_allclose(result.update["a"], np.median(stack, axis=0), rtol=1e-6)
    trimmed = trimmed_mean(updates, f=3)
    expected = np.sort(stack, axis=0)[3:-3].mean(axis=0)
    np.testing.assert_allclose(trimmed.update["a"], expected, rtol=1e-5)


def test_fedavg_is_sample_weighted_and_f_is_checked():
    updates = [{"a": np.zeros(2, np.float32)}, {"a": np.ones(2, np.float32)}]
    np.testing.assert_allclose(robust_aggregate("fedavg", updates, num_samples=[1, 3]).update["a"], [0.75, 0.75])
    np.testing.assert_allclose(robust_aggregate("average", updates).update["a"], [0.5, 0.5])
    with pytest.raises(ValueError, match="2f < n"):
        robust_aggregate("krum", updates, f=1)
    with pytest.raises(ValueError, match="Unknown baseline"):
        robust_aggregate("bulyan", updates)


def test_baseline_strategy_adds_the_baselines_aggregate_and_names_its_selection():
    rng = np.random.default_rng(3)
    updates = _updates(rng)
    base = {"a": np.ones((2, 2), np.float32), "b": np.zeros(2, np.float32)}
    strategy = BaselineStrategy("multikrum", f=3)
    state = strategy.aggregate_fit(1, base, [(u, 10) for u in updates])
    expected = multi_krum(updates, f=3)
    assert strategy.selected == expected.selected == tuple(range(7))
    np.testing.assert_allclose(state["a"], base["a"] + expected.update["a"], rtol=1e-6)
    median_strategy = BaselineStrategy("median")
    median_strategy.aggregate_fit(1, base, [(u, 10) for u in updates])
    assert median_strategy.selected is None and median_strategy.describe() == {"name": "median", "f": 0}
    with pytest.raises(ValueError, match="Unknown baseline"):
        BaselineStrategy("bulyan")


def _cluster_with_outliers(seed: int, *, honest: int = 12, outliers: int = 3, far: float = 1e3):
    """Near-identical honest rows around a centre, and ``outliers`` rows ``far`` away (one direction each)."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=6)
    rows = [centre + 0.01 * rng.normal(size=6) for _ in range(honest)]
    rows += [centre + far * rng.normal(size=6) for _ in range(outliers)]
    updates = [{"a": r[:4].reshape(2, 2).astype(np.float32), "b": r[4:].astype(np.float32)} for r in rows]
    return centre, updates


@pytest.mark.parametrize("name", ["nnm_trmean", "arc_trmean", "geomed", "cclip"])
def test_stronger_baselines_are_not_moved_by_far_outliers(name):
    centre, updates = _cluster_with_outliers(4)
    result = robust_aggregate(name, updates, f=3)
    moved = np.linalg.norm(flatten([result.update])[0][0] - centre)
    plain = np.linalg.norm(flatten([robust_aggregate("average", updates).update])[0][0] - centre)
    assert result.selected is None
    assert plain > 100  # the mean is dragged hundreds of units away ...
    assert moved < 0.5  # ... the robust rules stay within half a unit of the honest centre


def test_stronger_baselines_equal_byzfls_own_calls():
    import byzfl

    _, updates = _cluster_with_outliers(5, far=10.0)
    matrix, _ = flatten(updates)
    expected = {
        "nnm_trmean": byzfl.TrMean(f=3)(byzfl.NNM(f=3)(matrix)),
        "arc_trmean": byzfl.TrMean(f=3)(byzfl.ARC(f=3)(matrix.copy())),
        "geomed": byzfl.GeometricMedian(nu=0.1, T=10)(matrix),
        "cclip": byzfl.CenteredClipping(L=3, tau=float(np.median(np.linalg.norm(matrix, axis=1))))(matrix),
    }
    for name, vector in expected.items():
        got = flatten([robust_aggregate(name, updates, f=3).update])[0][0]
        np.testing.assert_allclose(got, np.asarray(vector, dtype=np.float32), rtol=1e-5, atol=1e-6, err_msg=name)
    # ARC clips in place: the caller's updates are left alone
    assert np.array_equal(flatten(updates)[0], matrix)


def test_arc_clips_the_largest_updates_before_the_trimmed_mean():
    # Four huge rows but f=3: the trimmed mean alone keeps one of them; ARC first clips int(2*3/15*(15-3)) = 4
    # rows to the 5th-largest norm (an honest one), so none survives.
    rows = [np.full(2, 1.0 + 0.01 * i) for i in range(11)] + [np.full(2, 1e4)] * 4
    updates = [{"a": r.astype(np.float32)} for r in rows]
    assert np.all(robust_aggregate("trmean", updates, f=3).update["a"] > 1000)
    assert np.all(robust_aggregate("arc_trmean", updates, f=3).update["a"] < 1.2)
    with pytest.raises(ValueError, match="2f < n"):
        robust_aggregate("nnm_trmean", updates[:5], f=3)

"""Each update attack submits what its docstring promises, measured against the honest deltas."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.experiments.update_attacks import (
    alie,
    alie_z,
    gaussian_noise,
    honest_statistics,
    ipm,
    ipm_norm_matched,
    l2_norm,
    rescale,
    scaling,
    sign_flip,
    sign_flip_norm_matched,
)


def _flat(state: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([state[k].ravel() for k in sorted(state)]).astype(np.float64)


def _cosine(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    x, y = _flat(a), _flat(b)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


@pytest.fixture
def honest() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    direction = rng.normal(size=(3, 4))
    # Honest deltas share a direction, with client noise and different magnitudes (non-IID sample counts).
    return [
        {"w": (scale * (direction + 0.3 * rng.normal(size=(3, 4)))).astype(np.float32), "b": rng.normal(size=2)}
        for scale in (0.5, 1.0, 1.5, 2.0, 4.0)
    ]


def test_honest_statistics(honest):
    stats = honest_statistics(honest)
    np.testing.assert_allclose(stats.mean["w"], np.mean([h["w"] for h in honest], axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats.std["b"], np.std([h["b"] for h in honest], axis=0), rtol=1e-5)
    assert stats.median_norm == pytest.approx(np.median([np.linalg.norm(_flat(h)) for h in honest]), rel=1e-6)
    with pytest.raises(ValueError, match="at least one honest delta"):
        honest_statistics([])


def test_sign_flip_scaling_noise(honest):
    delta = honest[0]
    np.testing.assert_array_equal(sign_flip(delta)["w"], -delta["w"])
    assert _cosine(scaling(delta, scale=7.0), delta) == pytest.approx(1.0)
    assert l2_norm(scaling(delta, scale=7.0)) == pytest.approx(7.0 * l2_norm(delta), rel=1e-6)
    noise = gaussian_noise({"x": np.zeros(40_000)}, std=0.3, seed=1)
    assert noise["x"].std() == pytest.approx(0.3, rel=0.03) and abs(noise["x"].mean()) < 0.01
    np.testing.assert_array_equal(noise["x"], gaussian_noise({"x": np.zeros(40_000)}, std=0.3, seed=1)["x"])


def test_norm_matched_sign_flip_has_honest_median_norm_and_opposite_direction(honest):
    stats = honest_statistics(honest)
    attack = sign_flip_norm_matched(stats.mean, target_norm=stats.median_norm)
    assert l2_norm(attack) == pytest.approx(stats.median_norm, rel=1e-5)
    assert _cosine(attack, stats.mean) == pytest.approx(-1.0, abs=1e-6)
    # With its own delta, the attacker points exactly away from itself, at the honest norm whatever its own.
    own = honest[-1]
    mine = sign_flip_norm_matched(own, target_norm=stats.median_norm)
    assert _cosine(mine, own) == pytest.approx(-1.0, abs=1e-6)
    assert l2_norm(mine) == pytest.approx(stats.median_norm, rel=1e-5) != pytest.approx(l2_norm(own), rel=0.1)


def test_ipm_and_its_norm_matched_variant(honest):
    stats = honest_statistics(honest)
    small = ipm(stats.mean, epsilon=0.5)
    np.testing.assert_allclose(small["w"], -0.5 * stats.mean["w"], rtol=1e-6)
    matched = ipm_norm_matched(stats.mean, target_norm=stats.median_norm)
    assert _cosine(matched, stats.mean) == pytest.approx(-1.0, abs=1e-6)
    assert l2_norm(matched) == pytest.approx(stats.median_norm, rel=1e-5)
    # Plain IPM is shorter than the honest updates (its norm gives it away); the matched one is not.
    assert l2_norm(small) == pytest.approx(0.5 * l2_norm(stats.mean), rel=1e-5)
    assert l2_norm(small) < 0.6 * stats.median_norm


def test_alie_stays_within_z_std_of_the_honest_mean(honest):
    stats = honest_statistics(honest)
    z = alie_z(10, 2)
    attack = alie(stats.mean, stats.std, z=z)
    for name in attack:
        gap = np.abs(attack[name].astype(np.float64) - stats.mean[name])
        assert np.all(gap <= z * stats.std[name] + 1e-5)
        np.testing.assert_allclose(gap, z * stats.std[name], rtol=1e-4, atol=1e-6)
    # Baruch et al.'s z_max: n=10, m=2 -> s = 4, z = ppf(6/10).
    assert z == pytest.approx(0.2533, abs=1e-3)


def test_rescale_keeps_zero_and_rejects_negative():
    assert l2_norm(rescale({"a": np.zeros(3)}, 5.0)) == 0.0
    with pytest.raises(ValueError, match=">= 0"):
        rescale({"a": np.ones(3)}, -1.0)

"""Pure aggregation functions and strategies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedledger.tensors import encode
from fedledger.trainer.aggregate import (
    AggregationError,
    FedAdamState,
    apply_delta,
    fedadam_step,
    fedavg,
    mean_std,
    subtract,
)
from fedledger.trainer.strategy import FedAdam, FedAvg, make_strategy


def _s(*values: float) -> dict[str, np.ndarray]:
    return {"a": np.array(values, dtype=np.float32), "b": np.full((2, 2), values[0], dtype=np.float32)}


def test_fedavg_is_sample_weighted():
    # Prepare
    results = [(_s(1.0, 2.0), 10), (_s(3.0, 6.0), 30)]
    # Execute
    avg = fedavg(results)
    # Assert: (10*1 + 30*3)/40 = 2.5, (10*2 + 30*6)/40 = 5
    np.testing.assert_allclose(avg["a"], [2.5, 5.0])
    np.testing.assert_allclose(avg["b"], np.full((2, 2), 2.5))
    assert all(v.dtype == np.float32 for v in avg.values())


def test_fedavg_of_one_update_is_that_update_and_accepts_torch():
    state = {"a": torch.tensor([0.1, -0.2])}
    np.testing.assert_array_equal(fedavg([(state, 7)])["a"], np.array([0.1, -0.2], dtype=np.float32))


def test_fedavg_is_bit_reproducible_for_the_same_order():
    rng = np.random.default_rng(0)
    results = [({"w": rng.normal(size=(64, 8)).astype(np.float32)}, int(rng.integers(1, 100))) for _ in range(5)]
    assert encode(fedavg(results)) == encode(fedavg(list(results)))


@pytest.mark.parametrize(
    ("results", "fragment"),
    [
        ([], "no accepted updates"),
        ([(_s(1.0), 0)], "sample counts must be > 0"),
        ([(_s(1.0), 1), ({"a": np.zeros(1, np.float32)}, 1)], "different tensor names"),
        ([(_s(1.0), 1), (_s(1.0, 2.0), 1)], "shape"),
    ],
)
def test_fedavg_rejects_bad_inputs(results, fragment):
    with pytest.raises(AggregationError, match=fragment):
        fedavg(results)


def test_subtract_and_apply_delta_are_inverse():
    new, old = _s(3.0, 1.0), _s(1.0, 4.0)
    delta = subtract(new, old)
    np.testing.assert_allclose(delta["a"], [2.0, -3.0])
    np.testing.assert_allclose(apply_delta(old, delta)["a"], new["a"])
    np.testing.assert_allclose(apply_delta(old, delta, server_lr=0.5)["a"], [2.0, 2.5])


def test_mean_std():
    mean, std = mean_std([_s(1.0, 0.0), _s(3.0, 0.0)])
    np.testing.assert_allclose(mean["a"], [2.0, 0.0])
    np.testing.assert_allclose(std["a"], [1.0, 0.0])


def test_fedadam_first_step_matches_the_formula():
    g, d = {"w": np.array([1.0], np.float32)}, {"w": np.array([0.2], np.float32)}
    new, state = fedadam_step(g, d, FedAdamState(), eta=0.1, beta_1=0.9, beta_2=0.99, tau=1e-3)
    m, v = 0.1 * 0.2, 0.01 * 0.04
    assert new["w"][0] == pytest.approx(1.0 + 0.1 * m / (np.sqrt(v) + 1e-3), rel=1e-6)
    assert state.step == 1 and state.m["w"][0] == pytest.approx(m) and state.v["w"][0] == pytest.approx(v)


def test_fedavg_strategy_adds_the_weighted_delta_to_the_global_state():
    strategy = FedAvg()
    new = strategy.aggregate_fit(1, _s(1.0, 1.0), [(_s(1.0, 2.0), 1), (_s(3.0, 4.0), 1)])
    np.testing.assert_allclose(new["a"], [3.0, 4.0])
    assert strategy.describe() == {"name": "fedavg", "server_lr": 1.0}


def test_fedadam_strategy_keeps_and_restores_its_moments():
    strategy = make_strategy("fedadam", eta=0.05)
    g = _s(0.0, 0.0)
    g1 = strategy.aggregate_fit(1, g, [(_s(1.0, -1.0), 2)])
    assert g1["a"][0] > 0 > g1["a"][1]
    saved = strategy.state_dict()
    resumed = FedAdam(eta=0.05)
    resumed.load_state_dict(saved)
    a = strategy.aggregate_fit(2, g1, [(_s(0.5, 0.5), 1)])
    b = resumed.aggregate_fit(2, g1, [(_s(0.5, 0.5), 1)])
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_strategy_parameter_errors():
    with pytest.raises(ValueError, match="server_lr"):
        FedAvg(server_lr=0)
    with pytest.raises(ValueError, match="eta must be > 0.*tau must be > 0"):
        FedAdam(eta=0, tau=0)
    with pytest.raises(ValueError, match="Unknown strategy"):
        make_strategy("krum")

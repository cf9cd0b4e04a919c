"""Each malicious mode transforms data or deltas as documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedledger.experiments.attacks import (
    Attack,
    AttackConfig,
    alie_z,
    backdoor_test_set,
    poison_dataset,
    poison_update,
)
from fedledger.trainer.data import TextDataset


def _data() -> TextDataset:
    return TextDataset(tuple(f"row {i}" for i in range(10)), np.array([0, 1] * 5), ("neg", "pos"))


def _delta() -> dict[str, np.ndarray]:
    return {"a": np.array([1.0, -2.0, 0.5], np.float32), "b": np.ones((2, 2), np.float32)}


def test_default_is_honest():
    config = AttackConfig()
    assert config.kind is Attack.NONE and not config.is_data_attack and not config.is_update_attack
    data = _data()
    assert poison_dataset(data, config) is data
    assert all(np.array_equal(poison_update(_delta(), config)[k], _delta()[k]) for k in _delta())


def test_label_flip_flips_the_given_fraction():
    data = _data()
    # The name as a string is coerced to the Attack (bench/robustness passes attack names as str).
    flip = AttackConfig(kind="label_flip")  # pyright: ignore[reportArgumentType]  # deliberately a str: the coercion under test
    assert flip.kind is Attack.LABEL_FLIP
    all_flipped = poison_dataset(data, flip)
    assert (all_flipped.labels == 1 - data.labels).all() and all_flipped.texts == data.texts
    half = poison_dataset(data, AttackConfig(kind=Attack.LABEL_FLIP, fraction=0.5, seed=1))
    assert int((half.labels != data.labels).sum()) == 5


def test_backdoor_adds_trigger_and_target_label():
    data = _data()
    poisoned = poison_dataset(data, AttackConfig(kind=Attack.BACKDOOR, fraction=0.3, trigger="zz", target_label=1))
    changed = [i for i, t in enumerate(poisoned.texts) if t != data.texts[i]]
    assert len(changed) == 3
    assert all(poisoned.texts[i] == f"zz {data.texts[i]}" and poisoned.labels[i] == 1 for i in changed)
    test = backdoor_test_set(data, trigger="zz", target_label=1)
    assert len(test) == 5 and (test.labels == 1).all() and all(t.startswith("zz ") for t in test.texts)


def test_backdoor_trigger_can_go_at_the_end_of_the_row():
    data = _data()
    config = AttackConfig(kind=Attack.BACKDOOR, fraction=0.3, trigger="zz", target_label=1, trigger_position="end")
    poisoned = poison_dataset(data, config)
    changed = [i for i, t in enumerate(poisoned.texts) if t != data.texts[i]]
    assert len(changed) == 3 and all(poisoned.texts[i] == f"{data.texts[i]} zz" for i in changed)
    test = backdoor_test_set(data, trigger="zz", target_label=1, position="end")
    assert all(t.endswith(" zz") and not t.startswith("zz") for t in test.texts)
    with pytest.raises(ValueError, match="trigger_position"):
        AttackConfig(kind=Attack.BACKDOOR, trigger_position="middle")  # type: ignore[arg-type]


def test_sign_flip_scaling_and_noise():
    delta = {k: torch.from_numpy(v) for k, v in _delta().items()}
    flipped = poison_update(delta, AttackConfig(kind=Attack.SIGN_FLIP))
    np.testing.assert_array_equal(flipped["a"], -_delta()["a"])
    scaled = poison_update(delta, AttackConfig(kind=Attack.SCALING, scale=5.0))
    np.testing.assert_array_equal(scaled["a"], 5.0 * _delta()["a"])
    noise = poison_update(delta, AttackConfig(kind=Attack.GAUSSIAN_NOISE, noise_std=2.0, seed=3))
    again = poison_update(delta, AttackConfig(kind=Attack.GAUSSIAN_NOISE, noise_std=2.0, seed=3))
    assert noise["b"].shape == (2, 2) and np.array_equal(noise["b"], again["b"])
    assert not np.array_equal(noise["b"], _delta()["b"])
    big = poison_update({"x": np.zeros(20_000, np.float32)}, AttackConfig(kind=Attack.GAUSSIAN_NOISE, noise_std=2.0))
    assert big["x"].std() == pytest.approx(2.0, rel=0.05)


def test_alie_and_ipm_use_the_honest_statistics():
    mean = {"a": np.array([1.0, -1.0], np.float32)}
    std = {"a": np.array([0.5, 0.1], np.float32)}
    alie = poison_update({"a": np.zeros(2)}, AttackConfig(kind=Attack.ALIE, z=2.0), honest_mean=mean, honest_std=std)
    np.testing.assert_allclose(alie["a"], [0.0, -1.2])
    ipm = poison_update({"a": np.zeros(2)}, AttackConfig(kind=Attack.IPM, epsilon=0.5), honest_mean=mean)
    np.testing.assert_allclose(ipm["a"], [-0.5, 0.5])
    with pytest.raises(ValueError, match="honest deltas' mean and std"):
        poison_update({"a": np.zeros(2)}, AttackConfig(kind=Attack.ALIE))


def test_alie_z_from_population():
    # n = 50, m = 12: s = floor(26) - 12 = 14, z = ppf(36/50) ~ 0.58 (Baruch et al. 2019)
    assert alie_z(50, 12) == pytest.approx(0.5828, abs=1e-3)
    config = AttackConfig(kind=Attack.ALIE, num_clients=50, num_malicious=12)
    out = poison_update({"a": np.zeros(1)}, config, honest_mean={"a": np.ones(1)}, honest_std={"a": np.ones(1)})
    assert out["a"][0] == pytest.approx(1.0 - 0.5828, abs=1e-3)


def test_attack_config_rejects_bad_values():
    with pytest.raises(ValueError):
        AttackConfig(kind="not-an-attack")  # pyright: ignore[reportArgumentType]  # deliberately the wrong type: the validation under test
    with pytest.raises(ValueError, match="fraction"):
        AttackConfig(fraction=1.5)


def test_norm_matched_attacks_use_the_honest_median_norm():
    delta = _delta()
    mean = {"a": np.array([2.0, 0.0, 0.0], np.float32), "b": np.zeros((2, 2), np.float32)}
    flipped = poison_update(delta, AttackConfig(kind=Attack.SIGN_FLIP_NM), honest_norm=3.0)
    scale = 3.0 / np.sqrt(sum(float((v**2).sum()) for v in delta.values()))
    np.testing.assert_allclose(flipped["a"], -scale * delta["a"], rtol=1e-6)
    ipm = poison_update(delta, AttackConfig(kind=Attack.IPM_NM), honest_mean=mean, honest_norm=0.5)
    np.testing.assert_allclose(ipm["a"], [-0.5, 0.0, 0.0], atol=1e-7)
    # A lone attacker without the round's statistics matches its own norm.
    alone = poison_update(delta, AttackConfig(kind=Attack.SIGN_FLIP_NM))
    np.testing.assert_allclose(alone["b"], -delta["b"], rtol=1e-6)
    with pytest.raises(ValueError, match="honest deltas' mean"):
        poison_update(delta, AttackConfig(kind=Attack.IPM_NM))

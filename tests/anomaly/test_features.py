"""Each round feature measures what anomaly/README.md says, and the screening catches norm-matched attacks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedledger.anomaly.detector import round_seed
from fedledger.anomaly.features import (
    ROUND_FEATURE_NAMES,
    SKETCH_BLOCKS,
    count_sketch,
    decode_sketch,
    direction_of,
    encode_sketch,
    ring_sketch,
    round_features,
    sketch_groups,
    update_features,
)
from fedledger.anomaly.screening import (
    RULE_COPIES,
    RULE_EXTREME,
    RULE_ISOLATED,
    RULE_NORM,
    RULE_TOO_FEW,
    RULE_WITHIN,
    ScreeningConfig,
    screen_round,
)
from fedledger.shares import decode_fixed, encode_fixed, split

from ..support import UpdateFactory

COLUMN = {name: i for i, name in enumerate(ROUND_FEATURE_NAMES)}


def _norm(tensors: dict[str, np.ndarray]) -> float:
    return float(np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in tensors.values())))


def _scaled(tensors: dict[str, np.ndarray], factor: float) -> dict[str, np.ndarray]:
    return {k: (v.astype(np.float64) * factor).astype(np.float32) for k, v in tensors.items()}


def _mean(updates: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.mean([u[k].astype(np.float64) for u in updates], axis=0).astype(np.float32) for k in updates[0]}


def test_sketch_is_stored_compactly_and_decodes_to_float32():
    tensors = UpdateFactory(0).honest()
    features = update_features(tensors, sketch_dim=512, samples=30, epsilon=2.0)
    assert isinstance(features["sketch"], str) and len(features["sketch"]) == 2732  # base64 of 512 float32
    assert np.array_equal(
        decode_sketch(features["sketch"]), count_sketch(tensors, 512, blocks=SKETCH_BLOCKS).astype(np.float32)
    )
    assert decode_sketch([1.0, 2.0]).tolist() == [1.0, 2.0]  # records written before the compact encoding
    assert (features["samples"], features["epsilon"]) == (30, 2.0)
    assert sum(features["layer_profile"]) == pytest.approx(1.0, abs=1e-5)
    json.dumps(features)


def test_direction_of_is_the_sketch_of_the_weighted_mean():
    factory = UpdateFactory(1)
    a, b = factory.honest(), factory.honest()
    mean = {k: (a[k].astype(np.float64) + 3 * b[k].astype(np.float64)) / 4 for k in a}
    direction = direction_of([update_features(a), update_features(b)], [1, 3])
    assert np.allclose(direction, count_sketch(mean, 512, blocks=SKETCH_BLOCKS), rtol=1e-5, atol=1e-6)
    assert direction_of([], []) == [] and direction_of([update_features(a)], [0]) == []
    with pytest.raises(ValueError, match="one weight per update"):
        direction_of([update_features(a)], [1, 2])


def test_sign_flip_is_opposite_to_the_centre_and_the_previous_direction():
    factory = UpdateFactory(2)
    updates = [factory.honest() for _ in range(8)]
    updates[-1] = _scaled(updates[-1], -1.0)
    previous = direction_of([update_features(factory.honest()) for _ in range(5)], [1] * 5)
    features = [update_features(u) for u in updates]
    rows = round_features(features, previous_direction=previous)
    # honest: cosine ~0.6-0.8 to the centre; the flipped update: the same cosine with the sign reversed
    assert rows[-1, COLUMN["centre_distance"]] > 1.5 and rows[:-1, COLUMN["centre_distance"]].max() < 0.5
    assert rows[-1, COLUMN["previous_distance"]] > 1.5 and rows[:-1, COLUMN["previous_distance"]].max() < 0.5
    assert rows[-1, COLUMN["neighbour_distance"]] > 1.5
    without = round_features(features)
    assert not without[:, COLUMN["previous_distance"]].any()  # round 1: no previous direction


def test_norm_residual_measures_scaling_and_discounts_declared_samples():
    factory = UpdateFactory(3)
    samples = [10, 20, 40, 80, 160, 320, 640, 100]
    # honest norms grow with the square root of the samples (more local steps)
    updates = [_scaled(factory.honest(), np.sqrt(s / 10)) for s in samples]
    updates[-1] = _scaled(updates[-1], 5.0)
    rows = round_features([update_features(u, samples=s) for u, s in zip(updates, samples, strict=True)])
    residual = rows[:, COLUMN["norm_residual"]]
    assert np.abs(residual[:-1]).max() < 0.2  # the honest spread of 8x in norm is explained by the samples
    assert residual[-1] == pytest.approx(np.log(5.0), abs=0.2)
    plain = round_features([update_features(u) for u in updates])[:, COLUMN["norm_residual"]]
    assert np.ptp(plain[:-1]) > 1.5  # without declared samples the honest spread stays


def _realistic_round(seed: int, attack: str) -> tuple[list[dict], list[float]]:
    """Ten clients with non-identical data (each its own drift around the shared direction), two attackers."""
    rng = np.random.default_rng(seed)
    factory = UpdateFactory(seed)
    samples = rng.integers(20, 200, size=10)
    honest = [_scaled(factory.honest(), np.sqrt(s / 100)) for s in samples]
    median = float(np.median([_norm(u) for u in honest]))
    if attack == "sign_flip_nm":
        bad = [_scaled(u, -median / _norm(u)) for u in honest[8:]]
    elif attack == "ipm_nm":
        mean = _mean(honest[:8])
        bad = [_scaled(mean, -median / _norm(mean))] * 2
    elif attack == "scaled":  # one update 10x
        bad = [honest[8], _scaled(honest[9], 10.0)]
    else:
        bad = honest[8:]
    updates = honest[:8] + bad
    previous = direction_of([update_features(factory.honest()) for _ in range(8)], [1.0] * 8)
    return [update_features(u, samples=int(s)) for u, s in zip(updates, samples, strict=True)], previous


@pytest.mark.parametrize("attack", ["sign_flip_nm", "ipm_nm"])
def test_norm_matched_attacks_are_rejected_and_honest_updates_kept(attack):
    caught = false_alarms = 0
    for seed in range(8):
        features, previous = _realistic_round(seed, attack)
        verdicts = screen_round(features, seed=round_seed(seed), previous_direction=previous)
        caught += sum(not v.accepted for v in verdicts[8:])
        false_alarms += sum(not v.accepted for v in verdicts[:8])
        for v in verdicts[8:]:
            assert "distance" in v.reason and "robust deviations" in v.reason, v.reason
    assert caught == 16
    assert false_alarms <= 2  # of 64 honest updates


def test_honest_rounds_are_accepted():
    rejected = 0
    for seed in range(8):
        features, previous = _realistic_round(seed, "none")
        rejected += sum(not v.accepted for v in screen_round(features, seed=seed, previous_direction=previous))
    assert rejected <= 2  # of 80


def test_a_round_of_1000_updates_is_screened():
    rng = np.random.default_rng(5)
    direction = rng.normal(size=4096)
    vectors = 0.3 * direction + rng.normal(size=(1000, 4096))
    vectors[:50] *= -1.0  # 5 % sign-flipped, same norm
    features = [update_features({"w": v.astype(np.float32)}, samples=100) for v in vectors]
    verdicts = screen_round(features, seed=round_seed(7), previous_direction=direction_of(features[50:], [1] * 950))
    assert len(verdicts) == 1000
    assert sum(not v.accepted for v in verdicts[:50]) >= 48
    assert sum(not v.accepted for v in verdicts[50:]) <= 50


def test_max_deviation_rejects_what_the_forest_does_not_isolate():
    features, previous = _realistic_round(0, "none")
    factory = UpdateFactory(0)
    # two colluders sending similar scaled updates shield each other in an isolation forest (not near copies:
    # that rule is off here, to test the deviation rule on its own)
    features[8:] = [update_features(_scaled(factory.honest(), 30.0), samples=100) for _ in range(2)]
    strict = ScreeningConfig(max_similarity=None)
    verdicts = screen_round(features, seed=1, previous_direction=previous, config=strict)
    assert [v.accepted for v in verdicts[8:]] == [False, False]
    lenient = screen_round(
        features, seed=1, previous_direction=previous, config=ScreeningConfig(max_deviation=1e9, max_similarity=None)
    )
    assert all("norm_residual" in v.reason for v in verdicts[8:])
    assert sum(v.accepted for v in lenient[8:]) >= sum(v.accepted for v in verdicts[8:])


@pytest.mark.parametrize("attack", ["none", "sign_flip_nm", "ipm_nm", "scaled"])
def test_every_verdict_names_the_rule_that_decided_it_and_its_evidence_satisfies_that_rule(attack):
    """A rejected update never looks less anomalous than an accepted one under the rule that decided it."""
    config = ScreeningConfig()
    assert config.max_similarity is not None
    seen = set()
    for seed in range(6):
        features, previous = _realistic_round(seed, attack)
        for v in screen_round(features, seed=round_seed(seed), config=config, previous_direction=previous):
            assert v.score is not None and v.threshold is not None and v.deviation is not None
            isolated_and_deviant = v.score < v.threshold and v.deviation > config.min_deviation
            extreme = config.max_deviation is not None and v.deviation > config.max_deviation
            seen.add(v.rule)
            assert f"rule {v.rule}" in v.reason or v.accepted, v.reason
            if v.rule == RULE_NORM:
                assert not v.accepted and "times the round's median" in v.reason
            elif v.rule == RULE_COPIES:
                assert not v.accepted and v.similarity is not None and v.similarity > config.max_similarity
            elif v.rule == RULE_EXTREME:
                assert not v.accepted and extreme
            elif v.rule == RULE_ISOLATED:
                assert not v.accepted and isolated_and_deviant and not extreme
            else:
                assert v.rule == RULE_WITHIN and v.accepted and not isolated_and_deviant and not extreme
                assert v.reason.startswith("accepted:")
                assert v.similarity is not None and v.similarity <= config.max_similarity
    deciding = {
        "scaled": {RULE_EXTREME, RULE_NORM},
        "ipm_nm": {RULE_COPIES},
        "sign_flip_nm": {RULE_ISOLATED, RULE_EXTREME},
    }
    assert seen == {RULE_WITHIN} if attack == "none" else seen & deciding[attack]


def test_near_copies_are_rejected_whatever_their_norm_and_named_with_their_twin():
    """Colluders submitting one update several times (jittered so the bytes differ) are all rejected, while no
    pair of honest members comes near the bound."""
    features, previous = _realistic_round(0, "none")
    factory = UpdateFactory(0)
    rng = np.random.default_rng(3)
    poison = _scaled(factory.honest(), -1.0)
    copies = [
        {
            k: v + rng.normal(scale=1e-3 * float(np.abs(v).mean()), size=v.shape).astype(v.dtype)
            for k, v in poison.items()
        }
        for _ in range(2)
    ]
    features[8:] = [{**update_features(c, samples=100), "participant": f"m{i}"} for i, c in enumerate(copies)]
    verdicts = screen_round(features, seed=1, previous_direction=previous)
    assert [v.rule for v in verdicts[8:]] == [RULE_COPIES, RULE_COPIES]
    assert "with m1" in verdicts[8].reason and "with m0" in verdicts[9].reason
    assert all(v.similarity is not None and v.similarity < 0.9 for v in verdicts[:8])
    off = screen_round(features, seed=1, previous_direction=previous, config=ScreeningConfig(max_similarity=None))
    assert RULE_COPIES not in {v.rule for v in off}


def test_a_scaled_update_is_rejected_by_the_norm_bound_even_in_a_round_of_five():
    """Five updates are too few for a robust spread to single out a x10 update; the norm bound does not need one."""
    caught = 0
    for seed in range(6):
        features, previous = _realistic_round(seed, "scaled")
        round_of_five = features[5:]
        verdicts = screen_round(round_of_five, seed=round_seed(seed), previous_direction=previous)
        caught += verdicts[-1].rule == RULE_NORM and not verdicts[-1].accepted
        assert all(v.accepted for v in verdicts[:-1]), [v.reason for v in verdicts]
        lenient = ScreeningConfig(max_norm_ratio=None, max_deviation=None)
        unbounded = screen_round(round_of_five, seed=round_seed(seed), previous_direction=previous, config=lenient)
        assert RULE_NORM not in {v.rule for v in unbounded}
    assert caught == 6


def test_declared_samples_do_not_buy_norm():
    """Six of twenty attackers declare as many samples as all honest members together (the weight cap binds
    there) and send 20x updates: the samples fit must not explain their norm away."""
    rng = np.random.default_rng(4)
    factory = UpdateFactory(4)
    samples = [int(s) for s in rng.integers(10, 120, size=14)]
    honest = [_scaled(factory.honest(), np.sqrt(s / 50)) for s in samples]
    median = float(np.median([_norm(u) for u in honest]))
    attackers = [_scaled(factory.honest(), 20 * median / _norm(factory.honest())) for _ in range(6)]
    inflated = sum(samples)
    features = [update_features(u, samples=s) for u, s in zip(honest, samples, strict=True)]
    features += [update_features(u, samples=inflated) for u in attackers]
    verdicts = screen_round(features, seed=3)
    assert [v.rule for v in verdicts[14:]] == [RULE_NORM] * 6
    assert all(v.accepted for v in verdicts[:14])


def test_the_detector_reads_sketches_only():
    """What a peer cannot compute from additive shares of an update (its exact norm, peak, sparsity, profile)
    does not change a verdict: the same round with those fields scrambled gets the same verdicts."""
    features, previous = _realistic_round(2, "sign_flip_nm")
    scrambled = [
        {**f, "l2_norm": 1.0, "max_abs": 9.0, "mean": 0.0, "std": 1.0, "sparsity": 0.5, "layer_profile": [1.0]}
        for f in features
    ]
    assert screen_round(features, seed=4, previous_direction=previous) == screen_round(
        scrambled, seed=4, previous_direction=previous
    )


def test_too_few_updates_are_accepted_under_their_own_rule():
    features, _ = _realistic_round(0, "none")
    verdicts = screen_round(features[:3], seed=1)
    assert {v.rule for v in verdicts} == {RULE_TOO_FEW} and all(v.accepted for v in verdicts)


def test_the_sketch_of_secret_shares_is_the_sketch_of_the_update_and_the_verdicts_do_not_change():
    """Each organisation sketches only its share (fedledger.shares' encoding and split); the parts add up (mod
    2^64) to the update's sketch, and a round screened from those sums gets exactly the verdicts of the same round
    screened from the updates."""
    bits, dim = 20, 512
    _, previous = _realistic_round(1, "ipm_nm")
    factory = UpdateFactory(1)
    updates = [factory.honest() for _ in range(8)] + [_scaled(factory.honest(), -1.0), _scaled(factory.honest(), 8.0)]
    plain, shared = [], []
    for i, update in enumerate(updates):
        ring = encode_fixed(update, scale=bits)
        decoded = decode_fixed(ring, scale=bits)
        parts = [ring_sketch(share, dim, blocks=SKETCH_BLOCKS) for share in split(ring, 3)]
        total = sum(parts, np.zeros(dim, dtype=np.uint64)).astype(np.int64).astype(np.float64) / 2.0**bits
        expected = count_sketch(decoded, dim, blocks=SKETCH_BLOCKS)
        assert np.allclose(total, expected, rtol=0, atol=1e-9)
        assert not np.allclose(parts[0].astype(np.int64) / 2.0**bits, expected)  # one share says nothing
        blocks = len(sketch_groups(list(update), SKETCH_BLOCKS))
        samples = 50 + 10 * i
        plain.append({**update_features(decoded, samples=samples), "participant": f"m{i}"})
        shared.append(
            {"sketch": encode_sketch(total), "sketch_blocks": blocks, "samples": samples, "participant": f"m{i}"}
        )
    verdicts = screen_round(plain, seed=5, previous_direction=previous)
    assert screen_round(shared, seed=5, previous_direction=previous) == verdicts
    assert not verdicts[-1].accepted and verdicts[-1].rule == RULE_NORM

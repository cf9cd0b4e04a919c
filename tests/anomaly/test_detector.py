"""Update features and the IsolationForest detector: conventions, determinism, and what it catches."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from fedledger.anomaly.detector import UpdateAnomalyDetector, round_seed
from fedledger.anomaly.features import (
    ROUND_FEATURE_NAMES,
    SKETCH_BLOCKS,
    count_sketch,
    decode_sketch,
    round_features,
    update_features,
)

from ..support import UpdateFactory


def _noise(shape: tuple[int, ...]) -> np.ndarray:
    return (np.random.default_rng(0).normal(size=shape) * 0.02).astype(np.float32)


def _round(seed: int, attack=None):
    factory = UpdateFactory(seed)
    updates = [factory.honest() for _ in range(6)]
    if attack is not None:
        updates[-1] = attack(updates[-1])
    return round_features([update_features(u) for u in updates])


def test_update_features_match_numpy():
    tensors = UpdateFactory(1).honest()
    flat = np.concatenate([tensors[k].ravel().astype(np.float64) for k in sorted(tensors)])
    features = update_features(tensors, sketch_dim=32)
    assert features["l2_norm"] == pytest.approx(np.linalg.norm(flat))
    assert features["max_abs"] == pytest.approx(np.abs(flat).max())
    assert features["std"] == pytest.approx(flat.std())
    assert features["num_params"] == flat.size
    assert np.array_equal(
        decode_sketch(features["sketch"]), count_sketch(tensors, 32, blocks=SKETCH_BLOCKS).astype(np.float32)
    )
    json.dumps(features)  # stored on chain as JSON


def test_count_sketch_preserves_geometry():
    factory = UpdateFactory(2)
    a = factory.honest()
    flipped = {k: -v for k, v in a.items()}
    sa, sf = count_sketch(a, 64), count_sketch(flipped, 64)
    assert np.allclose(sa, -sf)
    norm = np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in a.values()))
    assert np.linalg.norm(sa) == pytest.approx(norm, rel=0.5)


def test_detector_follows_estimator_conventions():
    detector = UpdateAnomalyDetector(random_state=3)
    with pytest.raises(NotFittedError, match="call fit"):
        detector.predict(np.zeros((3, len(ROUND_FEATURE_NAMES))))
    features = _round(3)
    assert detector.fit(features) is detector
    assert detector.offset_ == -0.5
    scores = detector.score_samples(features)
    assert np.allclose(detector.decision_function(features), scores - detector.offset_)
    assert set(detector.predict(features)) <= {-1, 1}
    with pytest.raises(ValueError, match="at least 2 updates"):
        UpdateAnomalyDetector().fit(np.zeros((1, len(ROUND_FEATURE_NAMES))))


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param(lambda u: {k: -v for k, v in u.items()}, id="sign-flip"),
        pytest.param(lambda u: {k: 10 * v for k, v in u.items()}, id="scaling"),
        pytest.param(lambda u: {k: _noise(v.shape) for k in u for v in [u[k]]}, id="gaussian-noise"),
    ],
)
def test_obvious_attacks_are_flagged_and_honest_updates_kept(attack):
    caught = false_alarms = 0
    for seed in range(10):
        features = _round(seed, attack)
        # the contract's configuration: with six updates the forest alone leaves a x10 update at a score of
        # -0.49 in one seed of ten, which its 45 robust deviations reject by max_deviation
        detector = UpdateAnomalyDetector(random_state=round_seed(seed), max_deviation=6.0)
        predictions = detector.fit(features).predict(features)
        caught += predictions[-1] == -1
        false_alarms += int(np.sum(predictions[:-1] == -1))
    assert caught == 10
    assert false_alarms <= 2  # of 50 honest updates


def test_features_have_documented_names():
    assert _round(0).shape == (6, len(ROUND_FEATURE_NAMES))


_SCRIPT = """
import dataclasses, json, sys
sys.path.insert(0, {root!r})
from tests.support import UpdateFactory
from fedledger.anomaly.detector import round_seed
from fedledger.anomaly.features import direction_of, update_features
from fedledger.anomaly.screening import screen_round
factory = UpdateFactory(11)
previous = [update_features(factory.honest(), samples=50) for _ in range(6)]
updates = [factory.honest() for _ in range(6)]
updates[-1] = {{k: -5 * v for k, v in updates[-1].items()}}
rows = [update_features(u, samples=40 + 5 * i) for i, u in enumerate(updates)]
verdicts = screen_round(rows, seed=round_seed(42), previous_direction=direction_of(previous, [50] * 6))
print(json.dumps({{"features": rows, "verdicts": [dataclasses.asdict(v) for v in verdicts]}}, sort_keys=True))
"""


def test_same_round_gives_identical_verdicts_across_processes():
    root = str(pathlib.Path(__file__).resolve().parents[2])
    outputs = [
        subprocess.run(
            [sys.executable, "-c", _SCRIPT.format(root=root)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin"},
        ).stdout
        for seed in (1, 2)
    ]
    assert outputs[0] == outputs[1]
    result = json.loads(outputs[0])
    assert [v["accepted"] for v in result["verdicts"]] == [True] * 5 + [False]


@pytest.mark.parametrize("seed", range(6))
def test_predict_is_the_contracts_verdict_including_the_max_deviation_rule(seed):
    """Two colluding attackers sending the same update shield each other from the forest; max_deviation still
    rejects them, and ``predict`` with the rules' settings says exactly what ``screen_round`` writes."""
    from fedledger.anomaly.features import SCALE_FLOORS, UPPER_ONLY
    from fedledger.anomaly.screening import ScreeningConfig, screen_round

    factory = UpdateFactory(seed)
    updates = [factory.honest() for _ in range(6)]
    poisoned = {k: -8 * v for k, v in updates[0].items()}
    updates[-2:] = [poisoned, poisoned]
    features = [update_features(u) for u in updates]
    config = ScreeningConfig()
    verdicts = screen_round(features, seed=round_seed(seed), config=config)
    detector = UpdateAnomalyDetector(
        random_state=round_seed(seed),
        min_deviation=config.min_deviation,
        max_deviation=config.max_deviation,
        scale_floor=SCALE_FLOORS,
        upper_only=UPPER_ONLY,
    ).fit(round_features(features))
    assert [v.accepted for v in verdicts] == [p == 1 for p in detector.predict(round_features(features))]
    assert [v.accepted for v in verdicts][-2:] == [False, False]


def test_max_deviation_rejects_what_the_forest_does_not_isolate():
    rows = np.vstack([np.random.default_rng(0).normal(size=(7, 4)) * 0.1, np.full((3, 4), 5.0)])
    lenient = {"random_state": 1, "scale_floor": 0.05, "score_threshold": -1.0}  # no score is that low
    assert (UpdateAnomalyDetector(**lenient).fit(rows).predict(rows) == 1).all()
    gated = UpdateAnomalyDetector(**lenient, max_deviation=6.0).fit(rows)
    assert list(gated.predict(rows)) == [1] * 7 + [-1] * 3
    assert (gated.decision_function(rows) > 0).all()  # none of them isolated

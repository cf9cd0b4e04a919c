"""Screen one round of updates: the verdict the contract writes at FinalizeRound.

Pure numpy/scikit-learn over the features stored at SubmitUpdate, so that the chaincode, the
benchmarks and the simulations run exactly the same detector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedledger.anomaly.detector import UpdateAnomalyDetector
from fedledger.anomaly.features import (
    ROUND_FEATURE_NAMES,
    SCALE_FLOORS,
    UPPER_ONLY,
    nearest_similarity,
    norm_ratios,
    round_features,
)

__all__ = ["ScreeningConfig", "Verdict", "screen_round"]


@dataclass(frozen=True)
class ScreeningConfig:
    """The detector settings a consortium fixes in its rules (see ``chaincode.records.Rules``).

    ``max_deviation``: an update this many robust deviations away is rejected even when the forest
    does not isolate it (two colluding attackers sending the same update shield each other from an
    isolation forest); ``None`` leaves the forest the last word.

    ``max_similarity``: two updates whose sketches have a cosine above this are near copies and both are
    rejected (colluders submitting one poisoned update several times); ``None`` turns the rule off.

    ``max_norm_ratio``: an update whose (sketch) norm is more than this multiple of the norm expected of it
    (``features.norm_ratios``: the round's median, lowered for members declaring fewer samples than the median,
    never raised) is rejected, however few updates the round has to estimate a spread from (norm bounding).
    ``None`` turns the rule off.
    """

    contamination: str | float = "auto"
    score_threshold: float | None = None
    min_updates: int = 4
    min_deviation: float = 4.0
    n_estimators: int = 200
    max_deviation: float | None = 6.0
    max_similarity: float | None = 0.99
    max_norm_ratio: float | None = 4.0


#: The rules a verdict can come from (``Verdict.rule``).
RULE_TOO_FEW = "too-few-updates"  # fewer updates than detection needs: accepted unscreened
RULE_WITHIN = "within-limits"  # accepted by the detector
RULE_ISOLATED = "isolated-and-deviant"  # isolation score below the threshold AND a feature beyond min_deviation
RULE_EXTREME = "extreme-deviation"  # a feature beyond max_deviation, whatever the isolation score
RULE_COPIES = "near-copies"  # cosine above max_similarity with another update of the round
RULE_NORM = "norm-bound"  # norm above max_norm_ratio times the round's median norm


@dataclass(frozen=True)
class Verdict:
    """One update's verdict: which rule decided it, and the evidence (isolation score and threshold, and the
    largest robust deviation of any feature) the rule compared."""

    accepted: bool
    score: float | None
    threshold: float | None
    reason: str
    rule: str = RULE_WITHIN
    deviation: float | None = None
    similarity: float | None = None


def _name(features: Sequence[Mapping[str, Any]], index: int) -> str:
    return str(features[index].get("participant") or f"update {index + 1} of the round")


def screen_round(
    features: Sequence[Mapping[str, Any]],
    *,
    seed: int,
    config: ScreeningConfig = ScreeningConfig(),
    previous_direction: Sequence[float] | None = None,
) -> list[Verdict]:
    """One verdict per update, in order; identical on every machine for the same inputs and seed.

    ``previous_direction``: the sketch of the previous round's global update (``features.direction_of``
    over its accepted updates); ``None`` or ``[]`` in a first round.
    """
    if len(features) < config.min_updates:
        reason = f"accepted without detection: {len(features)} updates, detection needs {config.min_updates}"
        return [Verdict(True, None, None, reason, RULE_TOO_FEW) for _ in features]
    rows = round_features(features, previous_direction=previous_direction or None)
    contamination: str | float = "auto" if config.contamination == "auto" else float(config.contamination)
    detector = UpdateAnomalyDetector(
        contamination=contamination,
        n_estimators=config.n_estimators,
        random_state=seed,
        min_deviation=config.min_deviation,
        scale_floor=SCALE_FLOORS,
        upper_only=UPPER_ONLY,
        max_deviation=config.max_deviation,
        score_threshold=config.score_threshold,
    ).fit(rows)
    scores = detector.score_samples(rows)
    standardised = np.abs(detector.standardise(rows))
    deviation = standardised.max(axis=1)
    threshold = detector.threshold_
    decisions = detector.predict(rows)
    similarity, nearest = nearest_similarity(features)
    ratios = norm_ratios(features)
    verdicts = []
    for i, score in enumerate(scores):
        worst = int(np.argmax(standardised[i]))
        isolated = bool(score < threshold)
        anomalous = bool(decisions[i] == -1)
        evidence = (
            f"most deviant feature {ROUND_FEATURE_NAMES[worst]} = {rows[i, worst]:.3f} "
            f"(round median {detector.median_[worst]:.3f}, {deviation[i]:.1f} robust deviations)"
        )
        isolation = f"isolation score {score:.4f} {'<' if isolated else '>='} threshold {threshold:.4f}"
        extreme = config.max_deviation is not None and bool(deviation[i] > config.max_deviation)
        copy = config.max_similarity is not None and bool(similarity[i] > config.max_similarity)
        ratio = float(ratios[i])
        if config.max_norm_ratio is not None and ratio > config.max_norm_ratio:
            rule = RULE_NORM
            anomalous = True
            reason = (
                f"rejected by rule {rule}: norm {ratio:.2f} times the round's median norm (for its declared samples) "
                f"> {config.max_norm_ratio:g} ({isolation}; {evidence})"
            )
        elif copy:
            rule = RULE_COPIES
            anomalous = True
            reason = (
                f"rejected by rule {rule}: cosine {similarity[i]:.4f} with {_name(features, int(nearest[i]))} "
                f"> {config.max_similarity:g}, a near copy ({isolation}; {evidence})"
            )
        elif anomalous and extreme:
            rule = RULE_EXTREME
            reason = f"rejected by rule {rule}: {evidence} > {config.max_deviation:g}, whatever the score ({isolation})"
        elif anomalous:
            rule = RULE_ISOLATED
            reason = f"rejected by rule {rule}: {isolation} and {evidence} > {config.min_deviation:g}"
        else:
            rule = RULE_WITHIN
            limits = f"{config.min_deviation:g} when isolated" + (
                f", {config.max_deviation:g} otherwise" if config.max_deviation is not None else ""
            )
            reason = f"accepted: {isolation}; {evidence} (rejection needs more than {limits})"
        verdicts.append(
            Verdict(
                not anomalous,
                round(float(score), 6),
                round(float(threshold), 6),
                reason,
                rule,
                round(float(deviation[i]), 6),
                round(float(similarity[i]), 6),
            )
        )
    return verdicts

"""Validation of consortium rules: every field's type and range is checked before any write."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from fedledger.chaincode.aggregation import SERVER_OPTIMIZERS
from fedledger.chaincode.errors import InvalidArgument
from fedledger.chaincode.records import Rules

_SET_BY_CONTRACT = {"version", "created_at", "created_by"}

# field -> (type, minimum or None, maximum or None)
_NUMERIC: dict[str, tuple[type, float | None, float | None]] = {
    "min_samples_per_update": (int, 1, None),
    "epsilon_per_round": (float, 0.0, None),
    "epsilon_total": (float, 0.0, None),
    "dp_delta": (float, 1e-12, 0.1),
    "max_update_norm": (float, 0.0, None),
    "max_update_bytes": (int, 1, None),
    "min_participants_per_round": (int, 1, None),
    "detector_min_updates": (int, 2, None),
    "detector_n_estimators": (int, 10, 5000),
    "detector_min_deviation": (float, 0.0, None),
    "detector_max_deviation": (float, 0.0, None),
    "detector_max_similarity": (float, 0.0, 1.0),
    "detector_max_norm_ratio": (float, 1.0, None),
    "sketch_dim": (int, 4, 4096),
    "max_text_bytes": (int, 16, 1_000_000),
    "max_participant_share": (float, 0.01, 1.0),
    "max_organisation_share": (float, 0.01, 1.0),
    "weight_samples_bound": (float, 1.0, None),  # or null (_NULLABLE)
    "server_lr": (float, 1e-9, 1e3),
    "fedadam_eta": (float, 1e-9, 1e3),
    "fedadam_beta_1": (float, 0.0, 0.999999),
    "fedadam_beta_2": (float, 0.0, 0.999999),
    "fedadam_tau": (float, 1e-12, 1e3),
    "aggregate_chunk_elements": (int, 16, 1 << 24),
    "reward_per_round": (int, 0, None),
    "trust_prior_accepted": (float, 0.0, None),
    "trust_prior_rejected": (float, 0.0, None),
    "trust_rejection_weight": (float, 0.0, None),
    "trust_suspend_below": (float, 0.0, 1.0),
    "dispute_window_seconds": (float, 0.0, None),
    "dispute_voting_seconds": (float, 0.0, None),
    "dispute_quorum": (int, 1, None),
    "governance_quorum": (int, 0, None),
    "max_clock_skew_seconds": (float, 1.0, 3600.0),
    "share_scale": (int, 16, 36),
}


#: numeric rules that also take null (turned off)
_NULLABLE = frozenset({"weight_samples_bound"})
_BOOLEAN = frozenset({"require_dp", "weight_norm_clip", "weight_direction", "weight_diversity", "secure_aggregation"})


def _check_number(name: str, value: Any) -> float | int:
    kind, low, high = _NUMERIC[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"rule {name} must be a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise InvalidArgument(f"rule {name} must be an integer, got {value!r}")
    if not math.isfinite(value):
        raise InvalidArgument(f"rule {name} must be finite, got {value!r}")
    if low is not None and value < low:
        raise InvalidArgument(f"rule {name} must be >= {low}, got {value!r}")
    if high is not None and value > high:
        raise InvalidArgument(f"rule {name} must be <= {high}, got {value!r}")
    return kind(value)


def _check_msps(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidArgument(f"rule {name} must be a list of MSP IDs, got {value!r}")
    return sorted(set(value))


def apply_patch(current: Rules, patch: dict[str, Any]) -> Rules:
    """Returns ``current`` with the fields of ``patch`` replaced, after checking all of them."""
    known = {f.name for f in dataclasses.fields(Rules)} - _SET_BY_CONTRACT
    unknown = sorted(set(patch) - known)
    if unknown:
        raise InvalidArgument(f"unknown rule(s): {', '.join(unknown)}; known rules: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for name, value in patch.items():
        if name in _NULLABLE and value is None:
            values[name] = None
        elif name in _NUMERIC:
            values[name] = _check_number(name, value)
        elif name in ("admin_msps", "member_msps"):
            values[name] = _check_msps(name, value)
        elif name in _BOOLEAN:
            if not isinstance(value, bool):
                raise InvalidArgument(f"rule {name} must be true or false, got {value!r}")
            values[name] = value
        elif name == "detector_contamination":
            values[name] = _check_contamination(value)
        elif name == "server_optimizer":
            if value not in SERVER_OPTIMIZERS:
                raise InvalidArgument(
                    f"rule server_optimizer must be one of {', '.join(SERVER_OPTIMIZERS)}, got {value!r}"
                )
            values[name] = value
        elif name == "detector_score_threshold":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise InvalidArgument(f"rule {name} must be a number or null, got {value!r}")
            values[name] = None if value is None else float(value)
    rules = dataclasses.replace(current, **values)
    if rules.epsilon_per_round > rules.epsilon_total:
        raise InvalidArgument(
            f"epsilon_per_round ({rules.epsilon_per_round}) cannot exceed epsilon_total ({rules.epsilon_total})"
        )
    return rules


def _check_contamination(value: Any) -> str:
    if value == "auto":
        return "auto"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 < number <= 0.5:
        raise InvalidArgument(f"rule detector_contamination must be 'auto' or in (0, 0.5], got {value!r}")
    return str(number)

"""The contract's verdict on a round's updates: the shared detector, configured by the consortium's rules.

FinalizeRound calls :func:`detect`; so do the experiments and benchmarks that screen updates without a
ledger, so that what they measure is what the chain runs. Pure: no ledger access.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from fedledger.anomaly.detector import round_seed
from fedledger.anomaly.screening import ScreeningConfig, Verdict, screen_round
from fedledger.chaincode.records import Rules

__all__ = ["detect", "screened", "screening_config"]


def screening_config(rules: Rules) -> ScreeningConfig:
    """Every ``ScreeningConfig`` field from the rule ``detector_<field>`` (a missing rule is an error)."""
    fields = dataclasses.fields(ScreeningConfig)
    return ScreeningConfig(**{f.name: getattr(rules, f"detector_{f.name}") for f in fields})


def screened(
    features: Mapping[str, Any], *, samples: int, epsilon: float, participant: str | None = None
) -> dict[str, Any]:
    """What the detector sees of one update: its stored features plus the declared training metadata (and who
    sent it, which verdicts name)."""
    record = {**features, "samples": samples, "epsilon": epsilon}
    if participant is not None:
        record["participant"] = participant
    return record


def detect(
    number: int, rules: Rules, updates: Sequence[Mapping[str, Any]], direction: Sequence[float] | None = None
) -> list[Verdict]:
    """The verdict on each of round ``number``'s ``updates`` (each :func:`screened`), identical on every peer.

    ``direction``: the sketch of the previous round's accepted FedAvg direction (``[]`` or ``None`` in a
    first round).
    """
    return screen_round(updates, seed=round_seed(number), config=screening_config(rules), previous_direction=direction)

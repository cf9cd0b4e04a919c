"""Capped shares: how a round's FedAvg weight and reward pool are split so that no single participant and no
single organisation can hold more than the rules allow, however large the numbers it (or its admin) declared.

Every participant gets the same multiple of its value (samples), except that no one exceeds the participant
cap, and an organisation whose members would together exceed the organisation cap has its members' multiple
lowered until it fits. The common multiple is then set so that the shares sum to 1. When the caps cannot all
hold (e.g. only one organisation has accepted updates), everyone gets its largest allowed share, scaled up to
sum to 1: there is no one else to give the weight to, and the result says so (``feasible`` is False).

Shares are exact fractions (no float rounding, so every endorsing peer computes the same split), then
quantised to integer units with the largest-remainder method: the units always sum to the total exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import median
from typing import Any

from fedledger.anomaly.features import centre_cosines, nearest_similarity, sketch_norms
from fedledger.chaincode.records import Rules

#: A round's accepted updates share this many weight units; an update's FedAvg factor is weight / WEIGHT_UNITS.
WEIGHT_UNITS = 1_000_000
#: The smallest direction or diversity factor of an accepted update (``weight_values``): an update at right angles
#: to the round's centre, or against it, weighs 1/100 of an aligned one (cosine 1) of the same samples and norm.
FACTOR_FLOOR = Fraction(1, 100)
#: The rules patch that turns every weight factor off: plain sample-weighted FedAvg under the caps (baselines).
PLAIN_FEDAVG_RULES: dict[str, Any] = {
    "weight_samples_bound": None,
    "weight_norm_clip": False,
    "weight_direction": False,
    "weight_diversity": False,
}


def organisation_of(participant_id: str) -> str:
    """The MSP ID part of a participant id ``MSPID:common name``."""
    return participant_id.split(":", 1)[0]


@dataclass(frozen=True)
class Split:
    shares: dict[str, Fraction]
    feasible: bool


def capped_shares(
    values: Mapping[str, Fraction | int | float], *, participant_cap: float, organisation_cap: float
) -> Split:
    """Shares of ``values`` (participant id -> non-negative value) under both caps (fractions of the total)."""
    # repr: the decimal the rules were written in (0.3 is 3/10, not the binary float nearest to it)
    p_cap, o_cap = Fraction(repr(float(participant_cap))), Fraction(repr(float(organisation_cap)))
    exact = {pid: Fraction(v) for pid, v in sorted(values.items())}
    if any(v < 0 for v in exact.values()):
        raise ValueError("capped_shares needs non-negative values")
    if not exact:
        return Split({}, feasible=True)
    if not any(exact.values()):
        return Split({pid: Fraction(1, len(exact)) for pid in exact}, feasible=False)
    most: dict[str, Fraction] = {}  # the largest share each participant may hold
    for org in sorted({organisation_of(pid) for pid in exact}):
        members = [pid for pid in exact if organisation_of(pid) == org]
        fits = _multiple([p_cap] * len(members), [exact[pid] for pid in members], o_cap)
        for pid in members:
            most[pid] = p_cap if fits is None else min(p_cap, fits * exact[pid])
    multiple = _multiple(list(most.values()), list(exact.values()), Fraction(1))
    if multiple is None:
        total = sum(most.values(), Fraction(0))
        return Split({pid: most[pid] / total for pid in exact}, feasible=False)
    return Split({pid: min(most[pid], multiple * exact[pid]) for pid in exact}, feasible=True)


def _multiple(caps: list[Fraction], values: list[Fraction], target: Fraction) -> Fraction | None:
    """The smallest t with sum_i min(caps_i, t * values_i) == target, or None if even t = infinity falls short.

    The sum is piecewise linear in t with a kink where each term reaches its cap (t = cap / value): walk the
    kinks in order, and solve the linear piece the target falls in.
    """
    terms = sorted((c / v, c, v) for c, v in zip(caps, values, strict=True) if v > 0)
    capped, slope = Fraction(0), sum((v for _, _, v in terms), Fraction(0))
    for kink, cap, value in terms:
        if capped + kink * slope >= target:
            return (target - capped) / slope
        capped, slope = capped + cap, slope - value
    return None


def quantise(total: int, shares: Mapping[str, Fraction]) -> dict[str, int]:
    """Integer parts of ``total`` in proportion to ``shares``; they sum to ``total`` exactly (0 if no one).

    Largest remainder, ties broken by participant id, so the result does not depend on dict order.
    """
    if not shares or total <= 0:
        return {pid: 0 for pid in shares}
    whole = sum(shares.values(), Fraction(0))
    exact = (
        {pid: total * s / whole for pid, s in shares.items()}
        if whole > 0
        else {pid: Fraction(total, len(shares)) for pid in shares}
    )
    amounts = {pid: int(value) for pid, value in exact.items()}
    remainder = total - sum(amounts.values())
    by_fraction = sorted(exact, key=lambda pid: (-(exact[pid] - amounts[pid]), pid))
    for pid in by_fraction[:remainder]:
        amounts[pid] += 1
    return amounts


def round_weights(
    values: Mapping[str, Fraction | int], *, participant_cap: float, organisation_cap: float
) -> dict[str, int]:
    """The FedAvg weight units of a round's accepted updates (participant id -> weight value, see
    :func:`weight_values`): capped shares of WEIGHT_UNITS, as FinalizeRound writes them on each update."""
    split = capped_shares(values, participant_cap=participant_cap, organisation_cap=organisation_cap)
    return quantise(WEIGHT_UNITS, split.shares)


def weight_values(
    samples: Mapping[str, int],
    norms: Mapping[str, float],
    *,
    samples_bound: float | None,
    norm_clip: bool,
    cosines: Mapping[str, float] | None = None,
    nearest: Mapping[str, float] | None = None,
) -> dict[str, Fraction]:
    """What each accepted update's FedAvg weight is proportional to, before the caps: its declared samples, at
    most ``samples_bound`` times the median of the accepted updates' declared samples, times
    ``min(1, median norm / its norm)`` when ``norm_clip`` (norms estimated from the sketches), times
    ``max(FACTOR_FLOOR, its cosine with the round's centre)`` when ``cosines`` are given, times
    ``max(FACTOR_FLOOR, min(1, 1 - its largest cosine with another update))`` when ``nearest`` are given.

    Samples are self-declared: the bound keeps colluders who each declare a huge count from holding the round
    (the caps bound each of them, not a group of them); while they are fewer than half of the accepted updates
    they cannot move the median. The norm factor gives an accepted update at most the influence of a median-norm
    update of the same weight (FLAME's norm clipping, Nguyen et al. 2022, expressed as a weight so that the
    aggregate stays the weighted mean the peers recompute). The cosine factor is FLTrust's trust score (Cao et
    al., NDSS 2021) with the round's robust centre as the reference direction instead of a server dataset: an
    update that points away from where the round goes adds next to nothing (the floor keeps every accepted
    update's weight positive: the aggregate's inputs are exactly the accepted updates). The last factor is
    FoolsGold's (Fung et al., RAID 2020): honest members train on their own data, colluders pushing one
    direction send similar updates, and a coherent group of them can also drag the round's centre their way;
    the more an update resembles another, the less it weighs. Exact fractions: every peer computes the same.
    """
    given = [norms] + [m for m in (cosines, nearest) if m is not None]
    if any(sorted(m) != sorted(samples) for m in given):
        raise ValueError("weight_values needs one sample count, one norm and one cosine (if any) per participant")
    if not samples:
        return {}
    values = {pid: Fraction(int(n)) for pid, n in samples.items()}
    if samples_bound is not None:
        most = Fraction(repr(float(samples_bound))) * median(values.values())
        values = {pid: min(n, most) for pid, n in values.items()}
    if norm_clip:
        exact = {pid: Fraction(repr(float(v))) for pid, v in norms.items()}
        middle = median(exact.values())
        values = {pid: n * min(Fraction(1), middle / exact[pid]) if exact[pid] > 0 else n for pid, n in values.items()}
    if cosines is not None:
        values = {pid: n * max(FACTOR_FLOOR, Fraction(repr(float(cosines[pid])))) for pid, n in values.items()}
    if nearest is not None:
        unlike = {pid: min(Fraction(1), 1 - Fraction(repr(float(nearest[pid])))) for pid in values}
        values = {pid: n * max(FACTOR_FLOOR, unlike[pid]) for pid, n in values.items()}
    return values


def accepted_weights(rules: Rules, accepted: Sequence[tuple[str, int, Mapping[str, Any]]]) -> dict[str, int]:
    """The FedAvg weight units of a round's accepted updates, each given as (participant, declared samples, stored
    features): :func:`weight_values` under the rules, then :func:`round_weights` under the caps."""
    features = [f for _pid, _n, f in accepted]
    ids = [pid for pid, _n, _f in accepted]
    norms = sketch_norms(features) if accepted else []
    cosines = centre_cosines(features) if accepted and rules.weight_direction else None
    similar = nearest_similarity(features)[0] if len(accepted) > 1 and rules.weight_diversity else None
    values = weight_values(
        {pid: n for pid, n, _f in accepted},
        {pid: float(v) for pid, v in zip(ids, norms, strict=True)},
        samples_bound=rules.weight_samples_bound,
        norm_clip=rules.weight_norm_clip,
        cosines=None if cosines is None else {pid: float(c) for pid, c in zip(ids, cosines, strict=True)},
        nearest=None if similar is None else {pid: float(c) for pid, c in zip(ids, similar, strict=True)},
    )
    return round_weights(
        values, participant_cap=rules.max_participant_share, organisation_cap=rules.max_organisation_share
    )

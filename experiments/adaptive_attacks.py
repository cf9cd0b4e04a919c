"""Adaptive attacks: colluding attackers who know every honest update of the round and the detector's rules.

The rules and the detector are public (they run in the chaincode on every endorsing peer), so an attacker can
run the very same screening on its candidate update before submitting it. These attacks are the yardstick a
detector must be measured against; each returns float32 numpy states sorted by name.

====================================  ============================================================================
function                              what the attackers submit
====================================  ============================================================================
:func:`min_max`                       Shejwalkar & Houmansadr, NDSS'21 (AGR-agnostic "Min-Max"): the honest
                                      mean pushed along a malicious direction as far as possible while its largest
                                      distance to any honest update stays within the largest honest-honest distance
:func:`min_sum`                       the same paper's "Min-Sum": the sum of squared distances to the honest
                                      updates stays within the largest such sum of any honest update
:func:`sybils`                        copies of one update with a random jitter each, so that no two are
                                      byte-identical (the contract refuses exact copies) but all pull the same way
:func:`under_the_threshold`           the malicious direction at the largest scale the detector still accepts,
                                      found by bisection against the detector itself (:func:`detector_oracle`,
                                      which replays the round as FinalizeRound will run it: :func:`rehearse`)
:func:`tuned_under_the_threshold`     the same, with the colluders' jitter tuned first: the smallest jitter at
                                      which their copies pass the detector's copy rules at all
====================================  ============================================================================

The perturbation directions follow the NDSS'21 paper: ``"unit"`` (minus the honest mean's unit vector),
``"std"`` (minus the coordinate-wise std) and ``"sign"`` (minus the sign of the mean).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from fedledger.anomaly.screening import Verdict
from fedledger.chaincode.records import Rules
from fedledger.chaincode.verdicts import detect
from fedledger.experiments.in_memory import HeldUpdate, hold, refusal, screening_inputs
from fedledger.tensors import Manifest, NDState, State, encode, to_numpy

__all__ = [
    "JITTERS",
    "Perturbation",
    "Submission",
    "detector_oracle",
    "min_max",
    "min_sum",
    "perturbation",
    "rehearse",
    "sybils",
    "tuned_under_the_threshold",
    "under_the_threshold",
]

Perturbation = Literal["unit", "std", "sign"]


def _flat(state: State) -> tuple[np.ndarray, list[tuple[str, tuple[int, ...], np.dtype]]]:
    arrays = to_numpy(state)
    layout = [(name, arrays[name].shape, arrays[name].dtype) for name in sorted(arrays)]
    return np.concatenate([arrays[name].astype(np.float64).ravel() for name, _, _ in layout]), layout


def _state(vector: np.ndarray, layout: list[tuple[str, tuple[int, ...], np.dtype]]) -> NDState:
    out: NDState = {}
    offset = 0
    for name, shape, _dtype in layout:
        size = int(np.prod(shape, dtype=np.int64))
        out[name] = vector[offset : offset + size].reshape(shape).astype(np.float32)
        offset += size
    return out


def _honest_matrix(honest: Sequence[State]) -> tuple[np.ndarray, list[tuple[str, tuple[int, ...], np.dtype]]]:
    if len(honest) < 2:
        raise ValueError(f"adaptive attacks need at least 2 honest updates to measure; got {len(honest)}")
    rows, layouts = zip(*(_flat(h) for h in honest), strict=True)
    if any(layout != layouts[0] for layout in layouts):
        raise ValueError("the honest updates differ in tensor names or shapes")
    return np.stack(rows), layouts[0]


def perturbation(honest: Sequence[State], kind: Perturbation = "unit") -> NDState:
    """The malicious direction of the NDSS'21 attacks, as a state (unit norm for ``"unit"``)."""
    matrix, layout = _honest_matrix(honest)
    return _state(_direction(matrix, kind), layout)


def _direction(matrix: np.ndarray, kind: Perturbation) -> np.ndarray:
    mean = matrix.mean(axis=0)
    if kind == "unit":
        norm = np.linalg.norm(mean)
        return -mean / norm if norm > 0 else np.zeros_like(mean)
    if kind == "std":
        return -matrix.std(axis=0)
    if kind == "sign":
        return -np.sign(mean)
    raise ValueError(f"perturbation must be 'unit', 'std' or 'sign', got {kind!r}")


def _largest(ok: Callable[[float], bool], *, start: float = 10.0, steps: int = 60) -> float:
    """The largest gamma >= 0 with ``ok(gamma)`` (ok(0) is assumed), by doubling then bisection."""
    low, high = 0.0, start
    while ok(high) and high < 1e12:
        low, high = high, high * 2
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if ok(middle) else (low, middle)
    return low


def _pairwise_sq(matrix: np.ndarray) -> np.ndarray:
    squares = (matrix * matrix).sum(axis=1)
    return np.maximum(squares[:, None] + squares[None, :] - 2 * matrix @ matrix.T, 0.0)


def min_max(honest: Sequence[State], *, kind: Perturbation = "unit") -> NDState:
    """Min-Max: ``mean + gamma * p`` with the largest gamma such that its distance to every honest update is at
    most the largest distance between two honest updates."""
    matrix, layout = _honest_matrix(honest)
    mean, direction = matrix.mean(axis=0), _direction(matrix, kind)
    bound = float(np.sqrt(_pairwise_sq(matrix).max()))

    def ok(gamma: float) -> bool:
        candidate = mean + gamma * direction
        return float(np.sqrt(((matrix - candidate) ** 2).sum(axis=1).max())) <= bound

    return _state(mean + _largest(ok) * direction, layout)


def min_sum(honest: Sequence[State], *, kind: Perturbation = "unit") -> NDState:
    """Min-Sum: ``mean + gamma * p`` with the largest gamma such that its sum of squared distances to the honest
    updates is at most the largest such sum of any honest update."""
    matrix, layout = _honest_matrix(honest)
    mean, direction = matrix.mean(axis=0), _direction(matrix, kind)
    bound = float(_pairwise_sq(matrix).sum(axis=1).max())

    def ok(gamma: float) -> bool:
        candidate = mean + gamma * direction
        return float(((matrix - candidate) ** 2).sum()) <= bound

    return _state(mean + _largest(ok) * direction, layout)


def sybils(update: State, count: int, *, jitter: float = 1e-3, seed: int = 0) -> list[NDState]:
    """``count`` copies of ``update``, each with Gaussian noise of relative norm about ``jitter``."""
    if count < 1 or not jitter >= 0:
        raise ValueError(f"sybils needs count >= 1 and jitter >= 0; got {count}, {jitter}")
    vector, layout = _flat(update)
    rng = np.random.default_rng(seed)
    scale = jitter * float(np.linalg.norm(vector)) / np.sqrt(max(1, vector.size))
    return [_state(vector + scale * rng.standard_normal(vector.size), layout) for _ in range(count)]


#: One submission as the round receives it: (participant id, update, declared samples).
Submission = tuple[str, State, int]


def _hold_all(submissions: Sequence[Submission], rules: Rules, manifest: Manifest, epsilon: float) -> list[HeldUpdate]:
    """Each update encoded as its member submits it, then held and featurised from the bytes as SubmitUpdate
    holds it (:func:`fedledger.experiments.in_memory.hold`)."""
    return [
        hold(
            who,
            encode(update, like=manifest),
            samples=samples,
            epsilon=epsilon,
            expected=manifest,
            sketch_dim=rules.sketch_dim,
        )
        for who, update, samples in submissions
    ]


def _verdicts(
    number: int, rules: Rules, held: Sequence[HeldUpdate], previous_direction: Sequence[float]
) -> dict[str, Verdict]:
    """FinalizeRound's verdicts on ``held`` (in submission order): what SubmitUpdate refuses never reaches it
    (:func:`~fedledger.experiments.in_memory.refusal`), the rest is screened in the contract's order by the
    contract's detect()."""
    kept: list[HeldUpdate] = []
    for h in held:
        if refusal(h, rules, (k.hash for k in kept)) is None:
            kept.append(h)
    ordered, updates = screening_inputs(kept)
    verdicts = detect(number, rules, updates, list(previous_direction))
    return {s.participant: v for s, v in zip(ordered, verdicts, strict=True)}


def rehearse(
    number: int,
    rules: Rules,
    submissions: Sequence[Submission],
    *,
    manifest: Manifest,
    previous_direction: Sequence[float] = (),
    epsilon: float = 0.0,
) -> dict[str, Verdict]:
    """The verdicts FinalizeRound of round ``number`` would write if exactly ``submissions`` were submitted:
    each update encoded as its member submits it, held and featurised from the bytes as SubmitUpdate does
    (:func:`fedledger.experiments.in_memory.hold`), screened in the contract's order (by participant id) with
    the declared samples, the rules and the previous round's accepted direction by
    :func:`fedledger.chaincode.verdicts.detect`. ``submissions`` are in submission order: an update SubmitUpdate
    would refuse (a byte copy of an earlier one, a norm over the bound) is left out and has no verdict."""
    held = _hold_all(submissions, rules, manifest, epsilon)
    return _verdicts(number, rules, held, previous_direction)


def detector_oracle(
    number: int,
    rules: Rules,
    honest: Sequence[Submission],
    attackers: Sequence[tuple[str, int]],
    *,
    copies: Callable[[NDState], Sequence[State]],
    manifest: Manifest,
    previous_direction: Sequence[float] = (),
    epsilon: float = 0.0,
) -> Callable[[NDState], bool]:
    """Whether FinalizeRound would accept every attacker if they submitted ``copies(candidate)`` beside the
    ``honest`` submissions: the public detector run on the round exactly as it will happen (what
    :func:`rehearse` returns for all the round's submissions; the honest ones are held once).

    ``attackers``: (participant id, declared samples) of each colluder, in the order ``copies`` returns their
    updates; ``copies`` must be the very function the attackers submit with (same jitter, same seed)."""
    honest_held = _hold_all(honest, rules, manifest, epsilon)

    def accepted(candidate: NDState) -> bool:
        updates = list(copies(candidate))
        if len(updates) != len(attackers):
            raise ValueError(f"copies() returned {len(updates)} updates for {len(attackers)} attackers")
        mine = [(who, update, samples) for (who, samples), update in zip(attackers, updates, strict=True)]
        verdicts = _verdicts(
            number, rules, [*honest_held, *_hold_all(mine, rules, manifest, epsilon)], previous_direction
        )
        return all(who in verdicts and verdicts[who].accepted for who, _ in attackers)

    return accepted


def under_the_threshold(
    honest: Sequence[State],
    accepted: Callable[[NDState], bool],
    *,
    kind: Perturbation = "unit",
    max_scale: float = 1e3,
    steps: int = 30,
) -> tuple[NDState, float]:
    """The honest mean pushed along the malicious direction (scaled to the honest median norm per unit of
    gamma) as far as ``accepted`` allows; returns the update and its gamma (0 when even a nudge is caught).

    ``steps``: bisection steps after the doubling brackets the boundary (the bracket shrinks by 2**steps)."""
    matrix, layout = _honest_matrix(honest)
    mean, direction = matrix.mean(axis=0), _direction(matrix, kind)
    norm = float(np.linalg.norm(direction))
    unit = direction / norm if norm > 0 else direction
    step = float(np.median(np.linalg.norm(matrix, axis=1)))

    def candidate(gamma: float) -> NDState:
        return _state(mean + gamma * step * unit, layout)

    def ok(gamma: float) -> bool:
        return gamma <= max_scale and accepted(candidate(gamma))

    gamma = _largest(ok, start=0.25, steps=steps)
    return candidate(gamma), gamma


#: Relative jitters the detector-aware colluders try, smallest first (pairwise cosine of two copies of relative
#: jitter j is about 1 / (1 + j^2): 0.1 gives 0.990, 0.2 gives 0.96).
JITTERS = (1e-3, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)


def tuned_under_the_threshold(
    honest: Sequence[State],
    oracle_for: Callable[[float], Callable[[NDState], bool]],
    *,
    jitters: Sequence[float] = JITTERS,
    kind: Perturbation = "unit",
    max_scale: float = 1e3,
    steps: int = 30,
) -> tuple[NDState, float, float]:
    """:func:`under_the_threshold` with the colluders' jitter tuned too: the smallest of ``jitters`` at which
    the detector (``oracle_for(jitter)``, e.g. :func:`detector_oracle` with ``copies`` of that jitter) accepts
    every copy of the honest mean itself, then the largest push at that jitter. Returns (update, gamma, jitter);
    when no jitter gets even the honest mean through, the honest mean, 0 and the largest jitter."""
    matrix, layout = _honest_matrix(honest)
    mean = _state(matrix.mean(axis=0), layout)
    for jitter in jitters:
        accepted = oracle_for(jitter)
        if accepted(mean):
            update, gamma = under_the_threshold(honest, accepted, kind=kind, max_scale=max_scale, steps=steps)
            return update, gamma, jitter
    return mean, 0.0, jitters[-1]

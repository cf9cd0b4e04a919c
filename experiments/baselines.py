"""Classic robust aggregators, side by side with the detector: byzfl's and Flower's, not re-implemented.

Each baseline takes the round's updates (dicts of arrays with the same names and shapes) and returns a
:class:`BaselineResult`: the aggregated update (a dict again) and, for selection-based rules, which updates
built it. The arithmetic is the library's own:

==============  ===============================================  ==========================================
name            library call                                     per-update verdict
==============  ===============================================  ==========================================
``fedavg``      ``flwr.server.strategy.aggregate.aggregate``     none (everything is averaged)
                (sample-weighted, as FedAvg is defined)
``average``     ``byzfl.Average()`` (unweighted mean)            none
``krum``        ``byzfl.Krum(f)``                                the one update Krum returns
``multikrum``   ``byzfl.MultiKrum(f)``                           the ``n - f`` updates it averages
``median``      ``byzfl.Median()`` (coordinate-wise)             none: each coordinate from another update
``trmean``      ``byzfl.TrMean(f)`` (coordinate-wise, ``f``      none
                smallest and ``f`` largest dropped)
``nnm_trmean``  ``byzfl.NNM(f)`` then ``byzfl.TrMean(f)``:        none
                each update replaced by the mean of its
                ``n - f`` nearest neighbours, then trimmed mean
                (Allouah et al., AISTATS'23)
``arc_trmean``  ``byzfl.ARC(f)`` then ``byzfl.TrMean(f)``:        none
                the largest ~2f(n-f)/n updates clipped to the
                next norm, then trimmed mean (Allouah et al.,
                NeurIPS'24)
``geomed``      ``byzfl.GeometricMedian(nu=0.1, T=10)``          none
                (Weiszfeld iterations, RFA of Pillutla et al.)
``cclip``       ``byzfl.CenteredClipping(m=None, L=3, tau)``     none
                with ``tau`` = the round's median update norm
                (Karimireddy et al., ICML'21)
==============  ===============================================  ==========================================

byzfl's default ``tau = 100`` never clips updates whose norms are a few units, as here, so ``cclip`` takes the
round's median update norm (at least half the updates are then never clipped); it starts each round from the
zero vector (``m=None``), i.e. without server momentum.

byzfl returns only the aggregate. The selection of Krum is recovered by finding the input row equal to the
returned vector; that of Multi-Krum by recomputing its scores with byzfl's own distance tool
(``byzfl.utils.misc.distance_tool``) and checking that the mean of the selected rows is what byzfl
returned: if the two ever disagree (e.g. a future byzfl changes its rule) :class:`SelectionMismatchError`
says so instead of reporting a wrong selection.

:class:`BaselineStrategy` makes any of them the aggregation step of the round driver
(:class:`fedledger.trainer.rounds.RoundDriver`), e.g. over ``InMemoryRounds(..., screen=accept_all)``.

byzfl imports torch; this module is for experiments and benchmarks, not for the chaincode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedledger.tensors import NDState, State, to_numpy
from fedledger.trainer.aggregate import apply_delta
from fedledger.trainer.strategy import Strategy

__all__ = [
    "BASELINES",
    "SELECTION_BASELINES",
    "BaselineResult",
    "BaselineStrategy",
    "SelectionMismatchError",
    "arc_trmean",
    "average",
    "centered_clipping",
    "fedavg",
    "flatten",
    "geometric_median",
    "krum",
    "median",
    "multi_krum",
    "nnm_trmean",
    "robust_aggregate",
    "trimmed_mean",
    "unflatten",
]


class SelectionMismatchError(RuntimeError):
    """The selection recomputed from byzfl's distances does not reproduce byzfl's aggregate."""


@dataclass(frozen=True)
class BaselineResult:
    """An aggregated update and, for selection-based rules, the indices of the updates that built it."""

    update: NDState
    selected: tuple[int, ...] | None


def flatten(updates: Sequence[State]) -> tuple[np.ndarray, NDState]:
    """Stack updates as rows of an ``(n, d)`` float64 matrix (names sorted); also return a template."""
    if not updates:
        raise ValueError("Nothing to aggregate: no updates were given.")
    arrays = [to_numpy(u) for u in updates]
    template = arrays[0]
    for i, a in enumerate(arrays):
        if list(a) != list(template) or any(a[k].shape != template[k].shape for k in template):
            raise ValueError(f"Update {i} does not have the tensor names and shapes of update 0; align them first.")
    matrix = np.stack([np.concatenate([a[k].ravel() for k in template]).astype(np.float64) for a in arrays])
    return matrix, template


def unflatten(vector: np.ndarray, template: State) -> NDState:
    """The inverse of :func:`flatten` for one row: float32 arrays with the template's names and shapes."""
    out: NDState = {}
    offset = 0
    for name, array in to_numpy(template).items():
        size = array.size
        out[name] = np.asarray(vector[offset : offset + size], dtype=np.float32).reshape(array.shape)
        offset += size
    if offset != len(vector):
        raise ValueError(f"A vector of {len(vector)} values does not fit a template of {offset} values.")
    return out


def _check_f(f: int, n: int) -> None:
    if not 0 <= 2 * f < n:
        raise ValueError(f"Robust aggregation needs 0 <= 2f < n; got f={f} for n={n} updates. Lower f.")


def fedavg(updates: Sequence[State], num_samples: Sequence[int]) -> BaselineResult:
    """Plain FedAvg, weighted by sample counts (Flower's ``aggregate``)."""
    from flwr.server.strategy.aggregate import aggregate

    if len(num_samples) != len(updates):
        raise ValueError(f"{len(updates)} updates but {len(num_samples)} sample counts; give one count per update.")
    arrays = [to_numpy(u) for u in updates]
    names = list(arrays[0])
    averaged = aggregate([([a[k] for k in names], int(n)) for a, n in zip(arrays, num_samples, strict=True)])
    return BaselineResult({k: np.asarray(v, dtype=np.float32) for k, v in zip(names, averaged, strict=True)}, None)


def average(updates: Sequence[State]) -> BaselineResult:
    """Unweighted mean (``byzfl.Average``)."""
    import byzfl

    matrix, template = flatten(updates)
    return BaselineResult(unflatten(byzfl.Average()(matrix), template), None)


def median(updates: Sequence[State]) -> BaselineResult:
    """Coordinate-wise median (``byzfl.Median``)."""
    import byzfl

    matrix, template = flatten(updates)
    return BaselineResult(unflatten(np.asarray(byzfl.Median()(matrix)), template), None)


def trimmed_mean(updates: Sequence[State], *, f: int) -> BaselineResult:
    """Coordinate-wise trimmed mean dropping the ``f`` smallest and largest values (``byzfl.TrMean``)."""
    import byzfl

    matrix, template = flatten(updates)
    _check_f(f, len(matrix))
    return BaselineResult(unflatten(byzfl.TrMean(f=f)(matrix), template), None)


def nnm_trmean(updates: Sequence[State], *, f: int) -> BaselineResult:
    """Nearest-neighbour mixing then trimmed mean (``byzfl.NNM(f)`` then ``byzfl.TrMean(f)``)."""
    import byzfl

    matrix, template = flatten(updates)
    _check_f(f, len(matrix))
    mixed = np.asarray(byzfl.NNM(f=f)(matrix))
    return BaselineResult(unflatten(np.asarray(byzfl.TrMean(f=f)(mixed)), template), None)


def arc_trmean(updates: Sequence[State], *, f: int) -> BaselineResult:
    """Adaptive robust clipping then trimmed mean (``byzfl.ARC(f)`` then ``byzfl.TrMean(f)``)."""
    import byzfl

    matrix, template = flatten(updates)
    _check_f(f, len(matrix))
    clipped = np.asarray(byzfl.ARC(f=f)(matrix.copy()))  # ARC clips the rows in place
    return BaselineResult(unflatten(np.asarray(byzfl.TrMean(f=f)(clipped)), template), None)


def geometric_median(updates: Sequence[State], *, iterations: int = 10) -> BaselineResult:
    """Approximate geometric median (``byzfl.GeometricMedian(nu=0.1, T=iterations)``, Weiszfeld from 0)."""
    import byzfl

    matrix, template = flatten(updates)
    return BaselineResult(unflatten(np.asarray(byzfl.GeometricMedian(nu=0.1, T=iterations)(matrix)), template), None)


def centered_clipping(updates: Sequence[State], *, tau: float | None = None, iterations: int = 3) -> BaselineResult:
    """Centered clipping (``byzfl.CenteredClipping(m=None, L=iterations, tau)``) from the zero vector; ``tau``
    defaults to the median L2 norm of the updates."""
    import byzfl

    matrix, template = flatten(updates)
    radius = float(np.median(np.linalg.norm(matrix, axis=1))) if tau is None else tau
    if not radius > 0:
        return BaselineResult(unflatten(np.zeros(matrix.shape[1]), template), None)
    result = byzfl.CenteredClipping(m=None, L=iterations, tau=radius)(matrix)
    return BaselineResult(unflatten(np.asarray(result), template), None)


def krum(updates: Sequence[State], *, f: int) -> BaselineResult:
    """Krum (``byzfl.Krum``): the update with the smallest summed squared distance to its ``n - f - 1``
    nearest neighbours. Identical rows (colluders submitting the same vector) have identical scores; byzfl's
    ``argmin`` then returns the first, so the selection is the first row equal to the result."""
    import byzfl

    matrix, template = flatten(updates)
    _check_f(f, len(matrix))
    chosen = np.asarray(byzfl.Krum(f=f)(matrix))
    equal = np.flatnonzero(np.all(matrix == chosen, axis=1))
    if equal.size == 0:
        raise SelectionMismatchError("byzfl.Krum returned a vector that is none of its inputs.")
    return BaselineResult(unflatten(np.asarray(chosen), template), (int(equal[0]),))


def multi_krum(updates: Sequence[State], *, f: int) -> BaselineResult:
    """Multi-Krum (``byzfl.MultiKrum``): the mean of the ``n - f`` updates with the best Krum scores."""
    import byzfl
    from byzfl.utils.misc import distance_tool

    matrix, template = flatten(updates)
    n = len(matrix)
    _check_f(f, n)
    aggregate = byzfl.MultiKrum(f=f)(matrix)
    # byzfl's own scoring (byzfl/aggregators/aggregators.py, MultiKrum.__call__), to name the selection.
    dist = distance_tool(matrix).cdist(matrix, matrix) ** 2
    scores = np.sort(dist, axis=1)[:, 1 : n - f].mean(axis=1)
    selected = np.sort(np.argpartition(scores, n - f - 1)[: n - f])
    if not np.allclose(matrix[selected].mean(axis=0), aggregate, rtol=1e-9, atol=1e-12):
        raise SelectionMismatchError(
            "Recomputed Multi-Krum selection does not reproduce byzfl.MultiKrum's output; byzfl's rule may "
            "have changed: compare anomaly/baselines.py with byzfl/aggregators/aggregators.py."
        )
    return BaselineResult(unflatten(aggregate, template), tuple(int(i) for i in selected))


#: Baseline names, in the order the benchmarks report them.
BASELINES = (
    "fedavg",
    "krum",
    "multikrum",
    "median",
    "trmean",
    "nnm_trmean",
    "arc_trmean",
    "geomed",
    "cclip",
    "average",
)
#: Baselines with a per-update verdict (TPR/FPR are defined for them).
SELECTION_BASELINES = frozenset({"krum", "multikrum"})


def robust_aggregate(
    name: str, updates: Sequence[State], *, num_samples: Sequence[int] | None = None, f: int = 0
) -> BaselineResult:
    """Run the baseline called ``name`` (see :data:`BASELINES`); ``f`` is the number of attackers it assumes."""
    rules: dict[str, Callable[[], BaselineResult]] = {
        "fedavg": lambda: fedavg(updates, num_samples if num_samples is not None else [1] * len(updates)),
        "average": lambda: average(updates),
        "krum": lambda: krum(updates, f=f),
        "multikrum": lambda: multi_krum(updates, f=f),
        "median": lambda: median(updates),
        "trmean": lambda: trimmed_mean(updates, f=f),
        "nnm_trmean": lambda: nnm_trmean(updates, f=f),
        "arc_trmean": lambda: arc_trmean(updates, f=f),
        "geomed": lambda: geometric_median(updates),
        "cclip": lambda: centered_clipping(updates),
    }
    if name not in rules:
        raise ValueError(f"Unknown baseline {name!r}; choose one of {', '.join(BASELINES)}.")
    return rules[name]()


class BaselineStrategy(Strategy):
    """The baseline called ``baseline`` (see :data:`BASELINES`) as a round driver's strategy.

    Each round it aggregates every update it is given with :func:`robust_aggregate` (``f`` attackers assumed)
    and adds the result to the global state. ``selected`` then holds the positions, in the order the updates
    were given, of the updates a selection rule (Krum, Multi-Krum) used; ``None`` for the other rules.
    """

    def __init__(self, baseline: str, *, f: int = 0) -> None:
        if baseline not in BASELINES:
            raise ValueError(f"Unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}.")
        self.name = baseline
        self.f = f
        self.selected: tuple[int, ...] | None = None

    def aggregate_fit(
        self,
        server_round: int,
        global_state: Mapping[str, Any],
        results: Sequence[tuple[Mapping[str, Any], int]],
    ) -> NDState:
        aggregated = robust_aggregate(
            self.name, [delta for delta, _ in results], num_samples=[n for _, n in results], f=self.f
        )
        self.selected = aggregated.selected
        return apply_delta(global_state, aggregated.update)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "f": self.f}

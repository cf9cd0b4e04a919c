"""Pure aggregation functions over ``list[(state, weight)]`` (numpy; torch tensors are accepted).

The arithmetic is :mod:`fedledger.chaincode.aggregation`'s, the one the endorsing peers recompute at
CommitAggregate: float64, element-wise, in the order of the input list, so the same inputs in the same order
give bit-identical outputs on every machine. :func:`aggregate` is the server step a round commits (what the
strategies call); :func:`fedavg`, :func:`apply_delta` and :func:`fedadam_step` are its parts on their own, with
float32 results. Sort the inputs by update hash first: the contract does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fedledger.chaincode.aggregation import ServerOptimizer, aggregate_state, server_step, weighted_mean
from fedledger.tensors import NDState, State, to_numpy

__all__ = [
    "AggregationError",
    "FedAdamState",
    "ServerOptimizer",
    "add",
    "aggregate",
    "apply_delta",
    "fedadam_step",
    "fedavg",
    "mean_std",
    "subtract",
]


class AggregationError(ValueError):
    """Inputs that cannot be aggregated (none, mismatched names/shapes, non-positive sample counts)."""


def _check(results: Sequence[tuple[State, int]]) -> list[tuple[NDState, int]]:
    if not results:
        raise AggregationError("Nothing to aggregate: the round has no accepted updates.")
    converted = [(to_numpy(state), int(n)) for state, n in results]
    names = list(converted[0][0])
    for i, (state, n) in enumerate(converted):
        if n <= 0:
            raise AggregationError(f"Update {i} reports {n} samples; sample counts must be > 0.")
        if list(state) != names:
            diff = sorted(set(state) ^ set(names))
            raise AggregationError(f"Update {i} has different tensor names than update 0, e.g. {diff[:3]}.")
        for name in names:
            if state[name].shape != converted[0][0][name].shape:
                raise AggregationError(
                    f"Update {i}: {name} has shape {state[name].shape}, update 0 has {converted[0][0][name].shape}."
                )
    return converted


def fedavg(results: Sequence[tuple[State, int]]) -> NDState:
    """Weighted average: sum_i (n_i / sum_j n_j) * state_i, as float32."""
    converted = _check(results)
    total = sum(n for _, n in converted)
    return {
        name: weighted_mean(((state[name], n) for state, n in converted), total).astype(np.float32)
        for name in converted[0][0]
    }


def mean_std(states: Sequence[State]) -> tuple[NDState, NDState]:
    """Unweighted coordinate-wise mean and (population) standard deviation of several states."""
    converted = _check([(s, 1) for s in states])
    mean: NDState = {}
    std: NDState = {}
    for name in converted[0][0]:
        stack = np.stack([s[name].astype(np.float64) for s, _ in converted])
        mean[name] = stack.mean(axis=0).astype(np.float32)
        std[name] = stack.std(axis=0).astype(np.float32)
    return mean, std


def add(a: State, b: State, *, scale: float = 1.0) -> NDState:
    """``a + scale * b`` (names and shapes must match)."""
    na, nb = to_numpy(a), to_numpy(b)
    if list(na) != list(nb):
        raise AggregationError(f"States differ in names, e.g. {sorted(set(na) ^ set(nb))[:3]}.")
    return {k: (na[k].astype(np.float64) + scale * nb[k].astype(np.float64)).astype(np.float32) for k in na}


def subtract(a: State, b: State) -> NDState:
    """``a - b``: the delta of a trained state ``a`` against the global state ``b``."""
    return add(a, b, scale=-1.0)


def apply_delta(global_state: State, delta: State, *, server_lr: float = 1.0) -> NDState:
    """New global state ``global + server_lr * delta`` (FedAvg's server step), as float32."""
    g, d = to_numpy(global_state), to_numpy(delta)
    if list(g) != list(d):
        raise AggregationError(f"States differ in names, e.g. {sorted(set(g) ^ set(d))[:3]}.")
    optimizer = ServerOptimizer("fedavg", server_lr=server_lr)
    return {k: server_step(g[k], d[k], optimizer)[0].astype(np.float32) for k in g}


@dataclass
class FedAdamState:
    """Server optimiser moments of FedAdam (persist them to resume or to replay an audit)."""

    m: NDState = field(default_factory=dict)
    v: NDState = field(default_factory=dict)
    step: int = 0


def fedadam_step(
    global_state: State,
    avg_delta: State,
    state: FedAdamState,
    *,
    eta: float = 1e-2,
    beta_1: float = 0.9,
    beta_2: float = 0.99,
    tau: float = 1e-3,
) -> tuple[NDState, FedAdamState]:
    """One FedAdam server step (Reddi et al., "Adaptive Federated Optimization", 2021).

    The averaged client delta acts as the pseudo-gradient: ``m = b1 m + (1-b1) d``, ``v = b2 v + (1-b2) d^2``,
    ``x = x + eta * m / (sqrt(v) + tau)``. No bias correction (as in the paper and Flower). Returns the new
    global state and new moments (float32); the inputs are not modified.
    """
    g = to_numpy(global_state)
    d = to_numpy(avg_delta)
    if list(g) != list(d):
        raise AggregationError(f"Global state and delta differ in names, e.g. {sorted(set(g) ^ set(d))[:3]}.")
    optimizer = ServerOptimizer("fedadam", eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)
    new_m: NDState = {}
    new_v: NDState = {}
    out: NDState = {}
    for name in g:
        x, m, v = server_step(g[name], d[name], optimizer, state.m.get(name), state.v.get(name))
        assert m is not None and v is not None
        out[name] = x.astype(np.float32)
        new_m[name], new_v[name] = m.astype(np.float32), v.astype(np.float32)
    return out, FedAdamState(m=new_m, v=new_v, step=state.step + 1)


def _arrays(state: State) -> NDState:
    """Numpy arrays of a state, sorted by name: numpy arrays keep their dtype, torch tensors become float32."""
    return {
        name: to_numpy({name: state[name]})[name] if hasattr(state[name], "detach") else np.asarray(state[name])
        for name in sorted(state)
    }


def aggregate(
    global_state: State,
    results: Sequence[tuple[State, int]],
    optimizer: ServerOptimizer,
    moments: FedAdamState | None = None,
) -> tuple[NDState, FedAdamState | None]:
    """The server step of a round, exactly as the contract recomputes it: the new global state (each tensor in
    the global state's dtype) and, for a stateful ``optimizer``, the new moments (float32).

    ``results`` are ``(delta, weight)`` pairs in update-hash order; ``moments`` the previous ones (None: zero).
    """
    converted = _check(results)
    base = _arrays(global_state)
    if list(base) != list(converted[0][0]):
        raise AggregationError(
            f"Global state and deltas differ in names, e.g. {sorted(set(base) ^ set(converted[0][0]))[:3]}."
        )
    deltas = [(_arrays(state), n) for state, n in results]
    previous = (moments.m, moments.v) if moments is not None and moments.m else None
    model, m, v = aggregate_state(base, deltas, optimizer, previous)
    if m is None or v is None:
        return model, None
    return model, FedAdamState(m=m, v=v, step=(moments.step if moments else 0) + 1)

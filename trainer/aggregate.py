"""Pure aggregation functions over ``list[(state, num_samples)]`` (numpy; torch tensors are accepted).

Results are float32 numpy arrays sorted by name. Arithmetic is float64, element-wise, in the order of the
input list, so the same inputs in the same order give bit-identical outputs on every machine: an auditor can
recompute an aggregate and compare hashes. Sort the inputs by a canonical key (e.g. update hash) first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fedledger.tensors import NDState, State, to_numpy

__all__ = [
    "AggregationError",
    "FedAdamState",
    "add",
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
    """Sample-weighted average: sum_i (n_i / sum_j n_j) * state_i."""
    converted = _check(results)
    total = float(sum(n for _, n in converted))
    out: NDState = {}
    for name in converted[0][0]:
        acc = np.zeros(converted[0][0][name].shape, dtype=np.float64)
        for state, n in converted:
            acc += state[name].astype(np.float64) * (n / total)
        out[name] = acc.astype(np.float32)
    return out


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
    """New global state ``global + server_lr * delta``."""
    return add(global_state, delta, scale=server_lr)


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
    global state and new moments; the inputs are not modified.
    """
    g = to_numpy(global_state)
    d = to_numpy(avg_delta)
    if list(g) != list(d):
        raise AggregationError(f"Global state and delta differ in names, e.g. {sorted(set(g) ^ set(d))[:3]}.")
    new_m: NDState = {}
    new_v: NDState = {}
    out: NDState = {}
    for name in g:
        delta = d[name].astype(np.float64)
        m_prev = state.m.get(name, np.zeros_like(delta)).astype(np.float64)
        v_prev = state.v.get(name, np.zeros_like(delta)).astype(np.float64)
        m = beta_1 * m_prev + (1.0 - beta_1) * delta
        v = beta_2 * v_prev + (1.0 - beta_2) * delta * delta
        out[name] = (g[name].astype(np.float64) + eta * m / (np.sqrt(v) + tau)).astype(np.float32)
        new_m[name] = m.astype(np.float32)
        new_v[name] = v.astype(np.float32)
    return out, FedAdamState(m=new_m, v=new_v, step=state.step + 1)

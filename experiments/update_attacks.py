"""Update-space attacks: what a malicious client submits instead of its honest delta (numpy only).

Every function takes and returns dicts of arrays (torch tensors are accepted) and returns float32 numpy
arrays sorted by name. The data attacks (label flip, text backdoor) change what a client trains on and live
in :mod:`fedledger.experiments.attacks`, which also maps the attack names to these functions.

=============================  ============================================================================
function                       what the attacker submits
=============================  ============================================================================
:func:`sign_flip`              ``-delta``
:func:`scaling`                ``scale * delta``: model replacement / boosting (Bagdasaryan et al. 2020);
                               ``scale`` ~ number of clients makes one update dominate FedAvg
:func:`gaussian_noise`         pure noise N(0, std^2) with the delta's names and shapes
:func:`alie`                   "A Little Is Enough" (Baruch et al. 2019): ``mean - z * std`` of the honest
                               deltas, coordinate-wise, with ``z`` from :func:`alie_z`
:func:`ipm`                    Inner Product Manipulation (Xie et al. 2020): ``-epsilon * mean`` of the
                               honest deltas
:func:`sign_flip_norm_matched` ``-delta`` rescaled to the honest median L2 norm
:func:`ipm_norm_matched`       ``-mean`` of the honest deltas rescaled to the honest median L2 norm
=============================  ============================================================================

Threat model. ALIE, IPM and the norm-matched variants are *colluding, omniscient* attacks, as in the papers
that introduced them: the attackers know the honest deltas of the round (their mean, per-coordinate std and
median norm) before they submit. In a simulation they are given those statistics (:func:`honest_statistics`);
a lone real attacker can only estimate them from its own honest delta (``fedledger.trainer.member`` does).

The norm-matched variants exist because a norm check is the cheapest defence (FLTrust-style clipping, a
"reject if the norm is k times the median" rule): rescaling a malicious direction to the honest median norm
defeats any detector that looks at magnitudes only, so only direction-aware features can catch them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedledger.tensors import NDState, State, to_numpy
from fedledger.trainer.aggregate import mean_std

__all__ = [
    "HonestStatistics",
    "alie",
    "alie_z",
    "gaussian_noise",
    "honest_statistics",
    "ipm",
    "ipm_norm_matched",
    "l2_norm",
    "rescale",
    "scaling",
    "sign_flip",
    "sign_flip_norm_matched",
]


@dataclass(frozen=True)
class HonestStatistics:
    """What colluding attackers know about the round's honest deltas."""

    mean: NDState
    std: NDState
    median_norm: float


def l2_norm(state: State) -> float:
    """L2 norm of all tensors of a state taken together (float64 accumulation)."""
    return math.sqrt(sum(float(np.dot(v.ravel().astype(np.float64), v.ravel())) for v in to_numpy(state).values()))


def honest_statistics(honest: Sequence[State]) -> HonestStatistics:
    """Coordinate-wise mean and (population) std, and the median L2 norm, of the honest deltas."""
    if not honest:
        raise ValueError("Colluding attacks need at least one honest delta to imitate; got none.")
    mean, std = mean_std(honest)
    return HonestStatistics(mean, std, float(np.median([l2_norm(d) for d in honest])))


def rescale(state: State, target_norm: float) -> NDState:
    """``state`` scaled to L2 norm ``target_norm`` (a zero state stays zero)."""
    if not target_norm >= 0:
        raise ValueError(f"The target norm must be >= 0. Got {target_norm!r} instead.")
    arrays = to_numpy(state)
    norm = l2_norm(arrays)
    factor = target_norm / norm if norm > 0 else 0.0
    return {k: (v.astype(np.float64) * factor).astype(np.float32) for k, v in arrays.items()}


def sign_flip(delta: State) -> NDState:
    """``-delta``."""
    return {k: -v for k, v in to_numpy(delta).items()}


def scaling(delta: State, *, scale: float = 10.0) -> NDState:
    """``scale * delta`` (model replacement / boosting)."""
    return {k: (v * np.float32(scale)).astype(np.float32) for k, v in to_numpy(delta).items()}


def gaussian_noise(delta: State, *, std: float = 0.1, seed: int = 0) -> NDState:
    """Noise N(0, std^2) with the delta's names and shapes, in place of the real delta."""
    if std < 0:
        raise ValueError(f"The noise std must be >= 0. Got {std!r} instead.")
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0.0, std, size=v.shape).astype(np.float32) for k, v in to_numpy(delta).items()}


def alie_z(num_clients: int, num_malicious: int) -> float:
    """ALIE's z_max: the largest z such that ``s = floor(n/2 + 1) - m`` honest clients stay farther away."""
    from scipy.stats import norm

    if not 0 < num_malicious < num_clients:
        raise ValueError(f"Need 0 < num_malicious < num_clients; got {num_malicious} of {num_clients}.")
    s = math.floor(num_clients / 2 + 1) - num_malicious
    return float(norm.ppf((num_clients - s) / num_clients))


def alie(honest_mean: State, honest_std: State, *, z: float = 1.0) -> NDState:
    """``mean - z * std`` of the honest deltas, coordinate-wise (colluding: needs the honest statistics)."""
    mean, std = to_numpy(honest_mean), to_numpy(honest_std)
    return {k: (mean[k].astype(np.float64) - z * std[k].astype(np.float64)).astype(np.float32) for k in mean}


def ipm(honest_mean: State, *, epsilon: float = 0.5) -> NDState:
    """``-epsilon * mean`` of the honest deltas (colluding: needs the honest mean)."""
    return {k: (-epsilon * v.astype(np.float64)).astype(np.float32) for k, v in to_numpy(honest_mean).items()}


def sign_flip_norm_matched(delta: State, *, target_norm: float) -> NDState:
    """``-delta`` rescaled to ``target_norm`` (the honest median L2 norm): a sign flip no norm rule sees."""
    return rescale(sign_flip(delta), target_norm)


def ipm_norm_matched(honest_mean: State, *, target_norm: float) -> NDState:
    """``-mean`` of the honest deltas rescaled to ``target_norm`` (the honest median L2 norm).

    IPM's usual small ``epsilon`` gives a short update that a norm rule flags as too small; at the honest
    norm the update looks like any honest one except for its direction (cosine -1 to the honest mean).
    """
    return rescale(ipm(honest_mean, epsilon=1.0), target_norm)

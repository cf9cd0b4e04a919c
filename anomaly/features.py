"""Features of a model update, computed by every endorsing peer from the update's own bytes.

Two stages, because the bytes are only present when an update is submitted:
- ``update_features`` (at SubmitUpdate): statistics of one update plus a fixed-seed count sketch,
  a small vector whose inner products approximate those of the full updates. All of it goes on
  chain, so later stages can compare updates without their bytes.
- ``round_features`` (at FinalizeRound): each update relative to the round, from the stored
  features and sketches only. Robust statistics (median, MAD) so that a minority of attackers
  cannot move the reference point.

Everything is float64, fixed seeds, no wall clock: two peers produce identical numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

SKETCH_SEED = 20240611

ROUND_FEATURE_NAMES = (
    "log_norm_ratio",  # update norm vs the round's median norm: scaling / model replacement
    "centre_distance",  # 1 - cosine to the coordinate-wise median sketch: sign flip, IPM, label flip
    "neighbour_distance",  # mean sketch distance to nearest neighbours, Krum-like: isolated updates
    "log_max_ratio",  # largest coordinate vs the round's median: spiky backdoor-style updates
    "layer_spread_ratio",  # spread of per-tensor norms vs the round: updates concentrated in few layers
    "sparsity_delta",  # fraction of zeros vs the round's median
)


def _name_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


def count_sketch(tensors: Mapping[str, np.ndarray], dim: int, seed: int = SKETCH_SEED) -> np.ndarray:
    """Count sketch: each coordinate goes to a pseudo-random bucket with a pseudo-random sign.

    The bucket/sign streams depend only on (seed, tensor name), so every update of a round is
    projected the same way and sketch inner products estimate full inner products.
    """
    sketch = np.zeros(dim, dtype=np.float64)
    for name in sorted(tensors):
        flat = np.asarray(tensors[name], dtype=np.float64).ravel()
        rng = np.random.Generator(np.random.PCG64(_name_seed(seed, name)))
        buckets = rng.integers(0, dim, size=flat.size, dtype=np.int64)
        signs = rng.integers(0, 2, size=flat.size, dtype=np.int8).astype(np.float64) * 2.0 - 1.0
        sketch += np.bincount(buckets, weights=signs * flat, minlength=dim)
    return sketch


def update_features(tensors: Mapping[str, np.ndarray], *, sketch_dim: int = 64) -> dict[str, Any]:
    """Statistics of one update; JSON-ready (floats and a list)."""
    layer_norms = []
    total_sq = 0.0
    total = 0.0
    count = 0
    zeros = 0
    max_abs = 0.0
    for name in sorted(tensors):
        flat = np.asarray(tensors[name], dtype=np.float64).ravel()
        sq = float(np.dot(flat, flat))
        layer_norms.append(np.sqrt(sq))
        total_sq += sq
        total += float(flat.sum())
        count += flat.size
        zeros += int(np.count_nonzero(flat == 0.0))
        if flat.size:
            max_abs = max(max_abs, float(np.abs(flat).max()))
    mean = total / count if count else 0.0
    variance = max(total_sq / count - mean * mean, 0.0) if count else 0.0
    norms = np.asarray(layer_norms)
    return {
        "l2_norm": float(np.sqrt(total_sq)),
        "max_abs": max_abs,
        "mean": mean,
        "std": float(np.sqrt(variance)),
        "sparsity": zeros / count if count else 0.0,
        "num_params": count,
        "layer_norm_mean": float(norms.mean()) if norms.size else 0.0,
        "layer_norm_std": float(norms.std()) if norms.size else 0.0,
        "layer_norm_max": float(norms.max()) if norms.size else 0.0,
        "sketch": [float(v) for v in count_sketch(tensors, sketch_dim)],
    }


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return 1.0
    return float(1.0 - np.dot(a, b) / (na * nb))


def _log_ratio(values: np.ndarray) -> np.ndarray:
    tiny = 1e-12
    return np.log((values + tiny) / (np.median(values) + tiny))


def round_features(updates: list[Mapping[str, Any]]) -> np.ndarray:
    """One row per update (in the given order), columns ``ROUND_FEATURE_NAMES``."""
    n = len(updates)
    sketches = np.asarray([u["sketch"] for u in updates], dtype=np.float64)
    norms = np.asarray([u["l2_norm"] for u in updates], dtype=np.float64)
    max_abs = np.asarray([u["max_abs"] for u in updates], dtype=np.float64)
    spread = np.asarray([u["layer_norm_std"] / (u["layer_norm_mean"] + 1e-12) for u in updates], dtype=np.float64)
    sparsity = np.asarray([u["sparsity"] for u in updates], dtype=np.float64)

    centre = np.median(sketches, axis=0)
    centre_distance = np.asarray([_cosine_distance(s, centre) for s in sketches])

    k = max(1, min(n - 1, (n - 1) // 2))
    distances = np.asarray([[_cosine_distance(a, b) for b in sketches] for a in sketches])
    neighbour = np.asarray([np.sort(np.delete(distances[i], i))[:k].mean() if n > 1 else 0.0 for i in range(n)])
    return np.column_stack(
        [
            _log_ratio(norms),
            centre_distance,
            neighbour,
            _log_ratio(max_abs),
            _log_ratio(spread),
            sparsity - np.median(sparsity),
        ]
    )

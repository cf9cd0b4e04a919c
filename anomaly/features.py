"""Features of a model update, computed by every endorsing peer from the update's own bytes.

Two stages, because the bytes are only present when an update is submitted:

- ``update_features`` (at SubmitUpdate): statistics of one update, its per-layer-group norm profile
  and a fixed-seed count sketch, a small vector whose inner products approximate those of the full
  updates. All of it goes on chain (the sketch as base64 float32), so later stages compare updates
  without their bytes.
- ``round_features`` (at FinalizeRound): each update relative to the round (and to the previous
  round's global direction, ``direction_of``), from the stored features only. Robust statistics
  (coordinate median, median norm) so that a minority of attackers cannot move the reference point.

Every feature and why it is there: anomaly/README.md. Everything is float64, fixed seeds, sorted
iteration, no wall clock: two peers produce identical numbers.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_SKETCH_DIM",
    "PROFILE_GROUPS",
    "ROUND_FEATURE_NAMES",
    "SCALE_FLOORS",
    "SKETCH_BLOCKS",
    "UPPER_ONLY",
    "block_bounds",
    "centre_cosines",
    "count_sketch",
    "decode_sketch",
    "direction_of",
    "encode_sketch",
    "nearest_similarity",
    "norm_ratios",
    "ring_sketch",
    "round_features",
    "sketch_groups",
    "sketch_norms",
    "update_features",
]

SKETCH_SEED = 20240611
#: Cosines estimated from a d-dim count sketch err by about 1/sqrt(d): 0.044 at 512 (README.md).
DEFAULT_SKETCH_DIM = 512
#: Upper bound on the length of the per-layer-group norm profile stored per update (audit only).
PROFILE_GROUPS = 32
#: Layer groups of the stored sketch: each has its own block of the sketch, whose norm estimates the group's norm.
SKETCH_BLOCKS = 8
#: Tensors up to this many elements keep their sketch hash streams cached between calls.
_CACHE_ELEMENTS = 1 << 22

ROUND_FEATURE_NAMES = (
    "norm_residual",  # log norm vs the round, given declared samples: scaling, model replacement, noise, shrunk
    "centre_distance",  # 1 - cosine to the coordinate median of unit sketches: sign flip, IPM, label flip
    "previous_distance",  # 1 - cosine to the previous round's global direction (0 in round 1): sign flip, IPM
    "neighbour_distance",  # mean cosine distance to the nearest half of the round, Krum-like: isolated updates
    "profile_distance",  # total-variation distance of the layer-group norm profile to the round's median
    "nearest_distance",  # 1 - largest cosine with another update: noise, and updates that no member shares
)
#: Smallest robust scale of each feature (see UpdateAnomalyDetector.scale_floor), in ROUND_FEATURE_NAMES order.
SCALE_FLOORS = (0.35, 0.1, 0.1, 0.1, 0.05, 0.1)
#: Features where only values above the round's median are suspicious (distances).
UPPER_ONLY = (False, True, True, True, True, True)


def _name_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


def _hash_streams(seed: int, name: str, size: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.Generator(np.random.PCG64(_name_seed(seed, name)))
    buckets = rng.integers(0, dim, size=size, dtype=np.int64)
    signs = rng.integers(0, 2, size=size, dtype=np.int8).astype(np.float64) * 2.0 - 1.0
    return buckets, signs


_cached_streams = functools.lru_cache(maxsize=256)(_hash_streams)


def sketch_groups(names: Sequence[str], blocks: int) -> list[list[str]]:
    """The layer groups of a blocked sketch: sorted tensor names cut into at most ``blocks`` consecutive runs."""
    ordered = sorted(names)
    count = min(blocks, len(ordered))
    return [[ordered[i] for i in run] for run in np.array_split(np.arange(len(ordered)), count)] if count else []


def block_bounds(dim: int, blocks: int) -> list[int]:
    """Where each block of a ``dim``-long sketch of ``blocks`` groups starts (and, last, where it ends)."""
    return [i * dim // blocks for i in range(blocks + 1)]


def count_sketch(tensors: Mapping[str, np.ndarray], dim: int, seed: int = SKETCH_SEED, blocks: int = 1) -> np.ndarray:
    """Blocked count sketch: each coordinate goes to a pseudo-random bucket of its layer group's block, with a
    pseudo-random sign.

    The tensors (sorted by name) are cut into ``blocks`` groups (:func:`sketch_groups`) and group ``g`` is
    sketched into its own block of ``dim // blocks`` buckets (:func:`block_bounds`), so a block's squared norm
    estimates that group's squared norm, while the whole sketch still estimates inner products of the full
    updates without bias. The bucket/sign streams depend only on (seed, tensor name, block size): every update
    is projected the same way. The map is linear with +-1 entries, so it commutes with sums, also with the
    fixed-point sums of additive shares (the sketch of an update is the sum of its shares' sketches).
    """
    sketch = np.zeros(dim, dtype=np.float64)
    groups = sketch_groups(list(tensors), blocks)
    bounds = block_bounds(dim, len(groups))
    for group, (start, end) in zip(groups, itertools.pairwise(bounds), strict=True):
        for name in group:
            flat = np.asarray(tensors[name], dtype=np.float64).ravel()
            streams = _cached_streams if flat.size <= _CACHE_ELEMENTS else _hash_streams
            buckets, signs = streams(seed, name, flat.size, end - start)
            sketch[start:end] += np.bincount(buckets, weights=signs * flat, minlength=end - start)
    return sketch


def ring_sketch(shares: Mapping[str, np.ndarray], dim: int, seed: int = SKETCH_SEED, blocks: int = 1) -> np.ndarray:
    """:func:`count_sketch` of one additive share in the ring Z_2^64 (``uint64`` tensors, fixed point).

    The same buckets and signs as :func:`count_sketch`, with integer arithmetic that wraps modulo 2^64. The
    sketch is linear with +-1 entries, so the shares' ring sketches add up (mod 2^64) to the ring sketch of
    the fixed-point update: a peer that holds one share computes its part, and the sum of every part is the
    update's sketch without anyone seeing the update. :func:`count_sketch` of the decoded update is that sum
    read as signed integers over the fixed-point scale.
    """
    sketch = np.zeros(dim, dtype=np.uint64)
    groups = sketch_groups(list(shares), blocks)
    bounds = block_bounds(dim, len(groups))
    for group, (start, end) in zip(groups, itertools.pairwise(bounds), strict=True):
        for name in group:
            flat = np.asarray(shares[name], dtype=np.uint64).ravel()
            streams = _cached_streams if flat.size <= _CACHE_ELEMENTS else _hash_streams
            buckets, signs = streams(seed, name, flat.size, end - start)
            signed = np.where(signs > 0, flat, np.uint64(0) - flat)  # -v mod 2^64
            np.add.at(sketch[start:end], buckets, signed)
    return sketch


def encode_sketch(sketch: np.ndarray) -> str:
    """Base64 of little-endian float32: 4 bytes a dimension on chain instead of ~20 JSON characters."""
    return base64.b64encode(np.asarray(sketch, dtype="<f4").tobytes()).decode("ascii")


def decode_sketch(value: str | Sequence[float]) -> np.ndarray:
    """The float64 sketch of a stored feature record (also accepts the older plain JSON list)."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float64)
    return np.asarray(value, dtype=np.float64)


def _profile(layer_sq: np.ndarray) -> list[float]:
    """Share of the squared norm per layer group (sorted tensor names cut into at most PROFILE_GROUPS runs)."""
    if layer_sq.size == 0:
        return []
    groups = np.array_split(layer_sq, min(PROFILE_GROUPS, layer_sq.size))
    sums = np.asarray([g.sum() for g in groups])
    total = sums.sum()
    shares = sums / total if total > 0 else np.full(sums.size, 1.0 / sums.size)
    return [round(float(v), 6) for v in shares]


def update_features(
    tensors: Mapping[str, np.ndarray],
    *,
    sketch_dim: int = DEFAULT_SKETCH_DIM,
    samples: int | None = None,
    epsilon: float | None = None,
) -> dict[str, Any]:
    """Statistics of one update; JSON-ready. ``samples``/``epsilon`` (declared training metadata) are recorded."""
    layer_sq = []
    total = 0.0
    count = 0
    zeros = 0
    max_abs = 0.0
    for name in sorted(tensors):
        flat = np.asarray(tensors[name], dtype=np.float64).ravel()
        layer_sq.append(float(np.dot(flat, flat)))
        total += float(flat.sum())
        count += flat.size
        zeros += int(np.count_nonzero(flat == 0.0))
        if flat.size:
            max_abs = max(max_abs, float(np.abs(flat).max()))
    squares = np.asarray(layer_sq, dtype=np.float64)
    total_sq = float(squares.sum())
    norms = np.sqrt(squares)
    mean = total / count if count else 0.0
    variance = max(total_sq / count - mean * mean, 0.0) if count else 0.0
    features: dict[str, Any] = {
        "l2_norm": float(np.sqrt(total_sq)),
        "max_abs": max_abs,
        "mean": mean,
        "std": float(np.sqrt(variance)),
        "sparsity": zeros / count if count else 0.0,
        "num_params": count,
        "layer_norm_mean": float(norms.mean()) if norms.size else 0.0,
        "layer_norm_std": float(norms.std()) if norms.size else 0.0,
        "layer_norm_max": float(norms.max()) if norms.size else 0.0,
        "layer_profile": _profile(squares),
        "sketch": encode_sketch(count_sketch(tensors, sketch_dim, blocks=SKETCH_BLOCKS)),
        "sketch_blocks": len(sketch_groups(list(tensors), SKETCH_BLOCKS)),
    }
    if samples is not None:
        features["samples"] = int(samples)
    if epsilon is not None:
        features["epsilon"] = float(epsilon)
    return features


def _sketches(updates: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return np.asarray([decode_sketch(u["sketch"]) for u in updates], dtype=np.float64)


def direction_of(features: Sequence[Mapping[str, Any]], weights: Sequence[float]) -> list[float]:
    """Sketch of the weighted mean update (count sketches are linear): the next round's previous direction.

    ``weights`` are e.g. the accepted updates' declared samples, as FedAvg weighs them. Empty input or
    zero total weight gives ``[]`` (no direction).
    """
    w = np.asarray(weights, dtype=np.float64)
    if len(features) == 0 or w.sum() <= 0:
        return []
    if w.shape != (len(features),):
        raise ValueError(f"direction_of needs one weight per update; got {w.shape[0]} for {len(features)} updates")
    return [float(v) for v in (w / w.sum()) @ _sketches(features)]


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def _samples_slope(log_norm: np.ndarray, samples: np.ndarray) -> tuple[float, np.ndarray]:
    """Robust (Theil-Sen) slope of log(norm) on log(declared samples), and the log(samples) it was fitted on.

    The slope lies in [0, 1]: more local steps never shrink an update, and at most grow it in proportion.
    log(samples) is clamped to the round's median +- 3 robust deviations, so that a few members declaring far
    more samples than anyone cannot drag the fit to explain their norm.
    """
    x = np.log(np.maximum(samples, 1.0))
    centre = float(np.median(x))
    spread = max(float(np.median(np.abs(x - centre))) * 1.4826, 0.25)
    x = np.clip(x, centre - 3.0 * spread, centre + 3.0 * spread)
    dx = x[:, None] - x[None, :]
    dy = log_norm[:, None] - log_norm[None, :]
    pairs = np.triu(np.abs(dx) > 1e-9, k=1)
    slope = float(np.clip(np.median(dy[pairs] / dx[pairs]), 0.0, 1.0)) if pairs.any() else 0.0
    return slope, x


def _declared(updates: Sequence[Mapping[str, Any]]) -> np.ndarray | None:
    declared = [u.get("samples") for u in updates]
    return None if any(s is None for s in declared) else np.asarray(declared, dtype=np.float64)


def _norm_residual(norms: np.ndarray, samples: np.ndarray | None) -> np.ndarray:
    """log(norm) minus a robust fit on log(declared samples) (:func:`_samples_slope`), centred on the round's
    median.

    Honest update norms grow with the number of local steps, hence with the samples a client declares;
    the fit removes that honest spread (measured: the MAD of log-norms drops several-fold on Dirichlet
    splits), so scaled, shrunk or noise updates stand out. Without samples it is log(norm / median norm).
    """
    log_norm = np.log(norms + 1e-12)
    if samples is not None:
        slope, x = _samples_slope(log_norm, samples)
        log_norm = log_norm - slope * x
    return log_norm - np.median(log_norm)


def _centre_cosines(unit: np.ndarray) -> np.ndarray:
    return unit @ _unit(np.median(unit, axis=0))


def centre_cosines(updates: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Each update's cosine with the round's centre, the coordinate median of the unit sketches (a minority of
    attackers cannot move it far), rounded like the round features (peers agree)."""
    return np.round(_centre_cosines(_unit(_sketches(updates))), 9)


def sketch_norms(updates: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Each update's L2 norm estimated from its stored sketch, rounded like the round features (peers agree)."""
    return np.round(np.linalg.norm(_sketches(updates), axis=1), 9)


def norm_ratios(updates: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Each update's sketch norm over the norm expected of it: the round's median norm, scaled down (never up)
    for members who declare fewer samples than the round's median member.

    Declared samples can only lower what a member is allowed: a member who declares more samples than the
    median is held to the median norm, so attackers declaring many samples (up to the weight cap) buy no
    norm with them, while a x10 update of a small member is still judged against a small member's norm. The
    slope is fitted on the members at or below the median declared samples only, so that attackers declaring
    large counts and sending large updates cannot steepen it (which would lower the honest small members'
    allowance and raise the reference everyone is compared with).
    """
    log_norm = np.log(sketch_norms(updates) + 1e-12)
    expected = np.full(len(log_norm), float(np.median(log_norm)))
    samples = _declared(updates)
    if samples is not None:
        x = np.log(np.maximum(samples, 1.0))
        middle = float(np.median(x))
        small = x <= middle
        slope = _samples_slope(log_norm[small], samples[small])[0] if small.sum() >= 3 else 0.0
        expected = expected + slope * np.minimum(x - middle, 0.0)
    return np.round(np.exp(log_norm - expected), 9)


def _block_profiles(updates: Sequence[Mapping[str, Any]], sketches: np.ndarray) -> np.ndarray | None:
    """Each update's share of its squared sketch norm per layer-group block (None if the blocks differ or are
    unknown, as in records made before blocked sketches)."""
    blocks = {u.get("sketch_blocks") for u in updates}
    if len(blocks) != 1:
        return None
    count = blocks.pop()
    if not isinstance(count, int) or count < 2:
        return None
    bounds = block_bounds(sketches.shape[1], count)
    squares = np.column_stack([(sketches[:, a:b] ** 2).sum(axis=1) for a, b in itertools.pairwise(bounds)])
    totals = squares.sum(axis=1, keepdims=True)
    return np.divide(squares, totals, out=np.full_like(squares, 1.0 / count), where=totals > 0)


def nearest_similarity(updates: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Each update's largest cosine with another update of the round, and which one (estimated from sketches).

    Honest members train on their own data, with their own seeds and DP noise, so two of their updates are
    never near copies; colluding attackers who submit one poisoned update many times (sybils, or min-max /
    ALIE / IPM, which every colluder computes alike) are. Rounded like the round features.
    """
    unit = _unit(_sketches(updates))
    if len(unit) < 2:
        return np.zeros(len(unit)), np.zeros(len(unit), dtype=np.int64)
    cosines = unit @ unit.T
    np.fill_diagonal(cosines, -np.inf)
    nearest = np.argmax(cosines, axis=1)
    return np.round(cosines[np.arange(len(unit)), nearest], 9), nearest


def round_features(
    updates: Sequence[Mapping[str, Any]], *, previous_direction: Sequence[float] | None = None
) -> np.ndarray:
    """One row per update (in the given order), columns ``ROUND_FEATURE_NAMES``; vectorised, O(n^2 d).

    Sketches only (and the declared samples): norms and the layer profile are estimated from the blocked
    sketch, so the detector needs nothing a peer cannot compute from additive shares of the update."""
    n = len(updates)
    sketches = _sketches(updates)
    unit = _unit(sketches)
    norms = np.linalg.norm(sketches, axis=1)
    samples = _declared(updates)

    centre_distance = 1.0 - _centre_cosines(unit)

    previous = np.zeros(n)
    if previous_direction is not None and len(previous_direction) == unit.shape[1]:
        direction = _unit(np.asarray(previous_direction, dtype=np.float64))
        if direction.any():
            previous = 1.0 - unit @ direction

    neighbour = np.zeros(n)
    if n > 1:
        k = max(1, (n - 1) // 2)
        distances = 1.0 - unit @ unit.T
        np.fill_diagonal(distances, np.inf)
        neighbour = np.partition(distances, k - 1, axis=1)[:, :k].mean(axis=1)

    profile = np.zeros(n)
    profiles = _block_profiles(updates, sketches)
    if profiles is not None:
        profile = 0.5 * np.abs(profiles - np.median(profiles, axis=0)).sum(axis=1)

    nearest = 1.0 - nearest_similarity(updates)[0] if n > 1 else np.zeros(n)
    rows = np.column_stack([_norm_residual(norms, samples), centre_distance, previous, neighbour, profile, nearest])
    # BLAS kernels may differ in the last bits between CPUs; rounding keeps peers' verdicts identical.
    return np.round(rows, 9)

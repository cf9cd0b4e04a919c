"""What leaks: what an outsider reconstructs of one member's update from its on-chain count sketch, with the
sketch's seed known (the worst case: from the next version the seed is public once the round's shares are all
committed), and what one organisation learns from its own share.

The on-chain sketch is computed the way the share protocol computes it: the update is encoded in fixed point,
split into K additive shares, each share is ring-sketched (:func:`fedledger.anomaly.features.ring_sketch`, the
rules' size and blocks), the ring sketches are summed and decoded, and the result is stored as float32
(:func:`fedledger.anomaly.features.encode_sketch`). The attacks read only that sketch, the seed and the update's
tensor names and shapes (all public: the manifest).

The sketch is linear: ``sketch = A x`` with ``A`` (sketch size x d) holding one +-1 per column, in the row of the
coordinate's bucket (:func:`sketch_map` rebuilds it from the same bucket/sign streams ``count_sketch`` draws).
Attacks, each giving an estimate x̂ of the update x:

- ``zeros`` and ``random`` baselines: a guess from nothing (zeros; a Gaussian vector scaled to the norm the
  sketch gives away), so every figure below has a floor it must beat.
- ``estimator``: the count sketch's own point estimate, ``x̂_j = sign_j * sketch[bucket_j]``.
- ``least squares``: the minimum-norm solution of ``A x̂ = sketch``. The rows of ``A`` have disjoint supports, so
  it is ``sign_j * sketch[bucket_j] / (coordinates in bucket_j)``, the orthogonal projection of x onto A's row
  space (the test checks it against ``numpy.linalg.lstsq``).
- ``sparse (OMP)``: scikit-learn's OrthogonalMatchingPursuit on ``A`` with as many non-zeros as the update's top
  5 % (the sparse updates' exact count: the attacker is told it). Skipped above :data:`OMP_MAX_DIM` values.
- ``one share``: what organisation K holds, the one share computed from x (the others are plain random words):
  the share decoded as fixed point, as if it were the update.
- ``one share's sketch``: the estimator above on that share's ring sketch, decoded as fixed point.

Measures per (update, attack): cosine(x̂, x), relative L2 error ``|x̂ - x| / |x|``, the fraction of x's non-zero
coordinates within 10 % relative error, the fraction with the right sign (all, and among x's top 5 % by
magnitude), and the overlap of x̂'s top 5 % with x's top 5 %. Medians over the trials (each its own update and
its own sketch seed).
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import OrthogonalMatchingPursuit

from fedledger.anomaly.features import (
    SKETCH_BLOCKS,
    _hash_streams,  # the streams count_sketch draws: tests/bench/test_shares_leak.py checks the map against it
    block_bounds,
    count_sketch,
    decode_sketch,
    encode_sketch,
    ring_sketch,
    sketch_groups,
)
from fedledger.chaincode.records import Rules
from fedledger.shares import DEFAULT_SCALE, combine, decode_fixed, encode_fixed, split
from fedledger.tensors import NDState

logger = logging.getLogger("bench.shares")

SKETCH_DIM = Rules().sketch_dim
#: Organisations holding shares (the demo's consortium).
ORGS = 2
#: "Top" coordinates: the largest 5 % by magnitude (at least one).
TOP_FRACTION = 0.05
#: Relative error within which a coordinate counts as recovered.
TOLERANCE = 0.10
#: Non-zeros of the sparse synthetic updates, as a fraction of the values.
SPARSE_FRACTION = 0.05
#: Degrees of freedom of the heavy-tailed synthetic updates.
STUDENT_DF = 3
#: Larger updates skip OMP (its dense matrix would be 512 x d float64).
OMP_MAX_DIM = 20_000
#: Scale of the synthetic updates (that of the timing study's; the measures are scale-free).
SCALE = 0.01

_PREFIX = "base_model.model."
#: The demo's adapter under DP-SGD (``fedledger.experiments.demo_setup.DEMO_LORA_DP``): rank-1 LoRA on MiniLM's
#: pooler plus the classification head, 1,538 values. Names and shapes as peft's adapter state has them.
DEMO_ADAPTER: dict[str, tuple[int, ...]] = {
    f"{_PREFIX}bert.pooler.dense.lora_A.weight": (1, 384),
    f"{_PREFIX}bert.pooler.dense.lora_B.weight": (384, 1),
    f"{_PREFIX}classifier.bias": (2,),
    f"{_PREFIX}classifier.weight": (2, 384),
}
#: The demo's adapter without DP: rank-8 LoRA on every layer's query and value, plus the head, 74,498 values.
ALL_LAYER_ADAPTER: dict[str, tuple[int, ...]] = {
    **{
        f"{_PREFIX}bert.encoder.layer.{layer}.attention.self.{proj}.lora_{part}.weight": (8, 384)
        if part == "A"
        else (384, 8)
        for layer in range(6)
        for proj in ("query", "value")
        for part in ("A", "B")
    },
    f"{_PREFIX}classifier.bias": (2,),
    f"{_PREFIX}classifier.weight": (2, 384),
}
#: The outside review's size: one tensor of 128 values.
REVIEW_UPDATE: dict[str, tuple[int, ...]] = {"update": (128,)}

BASELINES = ("zeros", "random")
ATTACKS = ("estimator", "least squares", "sparse (OMP)")
SHARE_ATTACKS = ("one share", "one share's sketch")
METRICS = ("cosine", "rel_l2_error", "within_10pct", "sign_correct", "sign_correct_top", "top_overlap")

Sampler = Callable[[np.random.Generator, Mapping[str, tuple[int, ...]]], NDState]


# --- the sketch as a matrix ------------------------------------------------------------------------------------


def sketch_map(
    shapes: Mapping[str, tuple[int, ...]], dim: int, seed: int, blocks: int = SKETCH_BLOCKS
) -> tuple[np.ndarray, np.ndarray]:
    """The row (bucket in the whole sketch) and the sign of every coordinate of an update of these shapes, tensors
    sorted by name and flattened as :func:`flatten` does: ``sketch = bincount(rows, signs * x)``."""
    rows, signs = [], []
    groups = sketch_groups(list(shapes), blocks)
    for group, (start, end) in zip(groups, itertools.pairwise(block_bounds(dim, len(groups))), strict=True):
        for name in group:
            buckets, sign = _hash_streams(seed, name, math.prod(shapes[name]), end - start)
            rows.append(buckets + start)
            signs.append(sign)
    return np.concatenate(rows), np.concatenate(signs)


def sketch_matrix(rows: np.ndarray, signs: np.ndarray, dim: int) -> np.ndarray:
    """The dense ``dim x d`` matrix A with ``A @ flatten(x)`` = the count sketch of x."""
    a = np.zeros((dim, rows.size))
    a[rows, np.arange(rows.size)] = signs
    return a


def flatten(state: Mapping[str, np.ndarray]) -> np.ndarray:
    """The update's values, tensors sorted by name, as one float64 vector (the order :func:`sketch_map` uses)."""
    return np.concatenate([np.asarray(state[name], dtype=np.float64).ravel() for name in sorted(state)])


# --- updates ---------------------------------------------------------------------------------------------------


def gaussian(rng: np.random.Generator, shapes: Mapping[str, tuple[int, ...]]) -> NDState:
    return {name: SCALE * rng.standard_normal(shape) for name, shape in shapes.items()}


def student_t(rng: np.random.Generator, shapes: Mapping[str, tuple[int, ...]]) -> NDState:
    return {name: SCALE * rng.standard_t(STUDENT_DF, shape) for name, shape in shapes.items()}


def sparse(rng: np.random.Generator, shapes: Mapping[str, tuple[int, ...]]) -> NDState:
    """Gaussian values on a uniformly random 5 % of the coordinates, zeros elsewhere."""
    sizes = [math.prod(shapes[name]) for name in sorted(shapes)]
    flat = np.zeros(sum(sizes))
    support = rng.choice(flat.size, size=_top_count(flat.size), replace=False)
    flat[support] = SCALE * rng.standard_normal(support.size)
    parts = np.split(flat, np.cumsum(sizes)[:-1])
    return {name: part.reshape(shapes[name]) for name, part in zip(sorted(shapes), parts, strict=True)}


GAUSSIAN, STUDENT, SPARSE = "Gaussian", f"Student-t ({STUDENT_DF} df)", "sparse (5 %)"
SAMPLERS: dict[str, Sampler] = {GAUSSIAN: gaussian, STUDENT: student_t, SPARSE: sparse}


def _top_count(d: int) -> int:
    return max(1, math.ceil(TOP_FRACTION * d))


# --- the on-chain sketch and one organisation's share -----------------------------------------------------------


def onchain(state: Mapping[str, np.ndarray], seed: int, k: int = ORGS) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The sketch the ledger stores for ``state`` under the share protocol (K ring sketches summed, decoded, then
    float32 as ``encode_sketch`` stores it), and the last share (the one computed from the update)."""
    shares = split(encode_fixed(state), k)
    parts = [ring_sketch(share, SKETCH_DIM, seed, SKETCH_BLOCKS) for share in shares]
    summed = decode_fixed({"s": combine([{"s": p} for p in parts])["s"]})["s"]
    return decode_sketch(encode_sketch(summed)), shares[-1]


# --- attacks ---------------------------------------------------------------------------------------------------


def estimator(sketch: np.ndarray, rows: np.ndarray, signs: np.ndarray) -> np.ndarray:
    return signs * sketch[rows]


def least_squares(sketch: np.ndarray, rows: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Minimum-norm solution of ``A x = sketch``: A's rows have disjoint supports, so ``A A^T`` is the diagonal of
    bucket occupancies and ``A^T (A A^T)^+ sketch`` is the estimator divided by its bucket's occupancy."""
    occupancy = np.bincount(rows, minlength=sketch.size)
    return signs * sketch[rows] / occupancy[rows]


def sparse_recovery(sketch: np.ndarray, rows: np.ndarray, signs: np.ndarray, nonzeros: int) -> np.ndarray:
    a = sketch_matrix(rows, signs, sketch.size)
    omp = OrthogonalMatchingPursuit(n_nonzero_coefs=min(nonzeros, sketch.size), fit_intercept=False)
    with warnings.catch_warnings():  # columns in one bucket are equal up to sign: OMP says so, then stops
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        omp.fit(a, sketch)
    return np.asarray(omp.coef_, dtype=np.float64)


def random_guess(rng: np.random.Generator, d: int, sketch: np.ndarray) -> np.ndarray:
    """A guess from nothing but the norm, which the sketch estimates."""
    guess = rng.standard_normal(d)
    return guess * np.linalg.norm(sketch) / np.linalg.norm(guess)


# --- measures --------------------------------------------------------------------------------------------------


def recovery(x: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """How well ``estimate`` recovers ``x`` (:data:`METRICS`); per-coordinate measures over x's non-zeros. NaN
    throughout for an all-zero ``x`` (a tensor of a sparse update can be)."""
    norm_x, norm_e = float(np.linalg.norm(x)), float(np.linalg.norm(estimate))
    if norm_x == 0:
        return dict.fromkeys(METRICS, float("nan"))
    nonzero = x != 0
    top = _top_count(x.size)
    true_top = np.argsort(-np.abs(x), kind="stable")[:top]
    guessed_top = np.argsort(-np.abs(estimate), kind="stable")[:top]
    return {
        "cosine": float(x @ estimate) / (norm_x * norm_e) if norm_e > 0 else 0.0,
        "rel_l2_error": float(np.linalg.norm(estimate - x)) / norm_x,
        "within_10pct": float(np.mean(np.abs(estimate - x)[nonzero] <= TOLERANCE * np.abs(x[nonzero]))),
        "sign_correct": float(np.mean(np.sign(estimate[nonzero]) == np.sign(x[nonzero]))),
        "sign_correct_top": float(np.mean(np.sign(estimate[true_top]) == np.sign(x[true_top]))),
        "top_overlap": len(set(true_top.tolist()) & set(guessed_top.tolist())) / top,
    }


def attack_one(state: NDState, seed: int, rng: np.random.Generator) -> dict[str, Any]:
    """Every attack on one update sketched with ``seed``: ``{attack: recovery}`` and the share's uniformity."""
    shapes = {name: tuple(np.shape(v)) for name, v in state.items()}
    x = flatten(decode_fixed(encode_fixed(state)))  # what the shares carry (within 2^-33 of the float update)
    sketch, share = onchain(state, seed)
    rows, signs = sketch_map(shapes, SKETCH_DIM, seed)
    estimates = {
        "zeros": np.zeros_like(x),
        "random": random_guess(rng, x.size, sketch),
        "estimator": estimator(sketch, rows, signs),
        "least squares": least_squares(sketch, rows, signs),
    }
    if x.size <= OMP_MAX_DIM:
        estimates["sparse (OMP)"] = sparse_recovery(sketch, rows, signs, _top_count(x.size))
    share_sketch = decode_fixed({"s": ring_sketch(share, SKETCH_DIM, seed, SKETCH_BLOCKS)})["s"]
    estimates["one share"] = flatten(decode_fixed(share))
    estimates["one share's sketch"] = estimator(share_sketch, rows, signs)
    words = np.concatenate([share[name].ravel() for name in sorted(share)])
    bounds = np.cumsum([0, *(math.prod(shapes[name]) for name in sorted(shapes))])
    by_tensor = {
        name: recovery(x[start:end], estimates["least squares"][start:end])
        for name, start, end in zip(sorted(shapes), bounds[:-1], bounds[1:], strict=True)
    }
    return {
        "recovery": {name: recovery(x, estimate) for name, estimate in estimates.items()},
        "by_tensor": by_tensor,
        # Kolmogorov-Smirnov p-value of the share's words against the uniform law on Z_2^64.
        "share_uniform_p": float(stats.kstest(words.astype(np.float64) / 2.0**64, "uniform").pvalue),
        "sketch_rel_error": float(np.linalg.norm(sketch - count_sketch(state, SKETCH_DIM, seed, SKETCH_BLOCKS)))
        / max(float(np.linalg.norm(sketch)), 1e-300),
    }


def measure_case(
    label: str, kind: str, updates: Sequence[NDState], seed: int, *, sketch_seeds: int = 1
) -> dict[str, Any]:
    """Every attack on every update of one case, each sketched under ``sketch_seeds`` seeds of its own; medians
    over those (update, seed) trials per attack, and per tensor for least squares."""
    rng = np.random.default_rng(seed)
    trials = [attack_one(u, int(rng.integers(2**63)), rng) for u in updates for _ in range(sketch_seeds)]
    attacks = list(trials[0]["recovery"])
    d = int(flatten(updates[0]).size)
    shapes = {name: tuple(np.shape(v)) for name, v in updates[0].items()}
    groups = sketch_groups(list(shapes), SKETCH_BLOCKS)
    rows = [
        {
            "case": label,
            "kind": kind,
            "d": d,
            "attack": attack,
            "trials": len(trials),
            **{m: _median([t["recovery"][attack][m] for t in trials]) for m in METRICS},
        }
        for attack in attacks
    ]
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    buckets = {
        name: end - start
        for group, (start, end) in zip(groups, itertools.pairwise(block_bounds(SKETCH_DIM, len(groups))), strict=True)
        for name in group
    }
    by_tensor = [
        {
            "tensor": name,
            "values": sizes[name],
            "buckets": buckets[name],
            **{m: _median([t["by_tensor"][name][m] for t in trials]) for m in METRICS},
        }
        for name in sorted(shapes)
    ]
    logger.info("leak %s %s: %d trials", label, kind, len(trials))
    return {
        "case": label,
        "kind": kind,
        "d": d,
        "tensors": len(shapes),
        "blocks": len(groups),
        "values_per_bucket": d / SKETCH_DIM,
        "trials": len(trials),
        "rows": rows,
        "by_tensor": by_tensor,
        "share_uniform_p_median": statistics.median(t["share_uniform_p"] for t in trials),
        "share_uniform_p_min": min(t["share_uniform_p"] for t in trials),
        "sketch_fixed_point_error_max": max(t["sketch_rel_error"] for t in trials),
    }


def _median(values: Sequence[float]) -> float:
    """The median of the values that are not NaN (NaN if none is)."""
    kept = [v for v in values if not math.isnan(v)]
    return float(statistics.median(kept)) if kept else float("nan")


def synthetic(shapes: Mapping[str, tuple[int, ...]], sampler: Sampler, trials: int, seed: int) -> list[NDState]:
    rng = np.random.default_rng(seed)
    return [sampler(rng, shapes) for _ in range(trials)]


#: The synthetic cases: (label, shapes, samplers).
CASES: tuple[tuple[str, Mapping[str, tuple[int, ...]], tuple[str, ...]], ...] = (
    ("demo adapter", DEMO_ADAPTER, tuple(SAMPLERS)),
    ("review's 128 values", REVIEW_UPDATE, (GAUSSIAN, SPARSE)),
    ("all-layer adapter", ALL_LAYER_ADAPTER, (GAUSSIAN, STUDENT)),
)


def run_leak(
    *,
    trials: int,
    seed: int,
    real: Sequence[NDState] = (),
    real_kind: str = "",
    real_seeds: int = 1,
    cases: Sequence[tuple[str, Mapping[str, tuple[int, ...]], Sequence[str]]] = CASES,
) -> dict[str, Any]:
    """Every case: the real updates first (if any), then the synthetic ones, ``trials`` updates each."""
    measured = []
    if real:
        measured.append(measure_case("demo adapter", real_kind, real, seed, sketch_seeds=real_seeds))
    for i, (label, shapes, kinds) in enumerate(cases):
        for j, kind in enumerate(kinds):
            case_seed = seed + 1000 * i + j + 1
            measured.append(measure_case(label, kind, synthetic(shapes, SAMPLERS[kind], trials, case_seed), case_seed))
    return {
        "cases": measured,
        "sketch_dim": SKETCH_DIM,
        "sketch_blocks": SKETCH_BLOCKS,
        "orgs": ORGS,
        "scale_bits": DEFAULT_SCALE,
        "top_fraction": TOP_FRACTION,
        "tolerance": TOLERANCE,
        "omp_max_dim": OMP_MAX_DIM,
        "baselines": list(BASELINES),
        "attacks": list(ATTACKS),
        "share_attacks": list(SHARE_ATTACKS),
    }


# --- real demo updates -----------------------------------------------------------------------------------------


def real_demo_updates(members: int, *, epsilon: float, rounds: int, seed: int) -> tuple[list[NDState], str]:
    """Round-1 updates of the demo's members: MiniLM with the demo's DP adapter, its data (breast-cancer
    Wisconsin as text, 80 % train, Dirichlet(1) partition) and its local training (DP-SGD, ε over ``rounds``).

    Each member trains from the same genesis adapter with its own data and seed, as in the demo's first round.
    """
    import os
    from dataclasses import replace

    import torch

    from fedledger.experiments.demo_setup import demo_privacy_config, demo_train_config, load_demo_model
    from fedledger.trainer.data import load_breast_cancer_text, partition_dirichlet, to_tensor_dataset
    from fedledger.trainer.data import train_test_split as split_rows
    from fedledger.trainer.local_trainer import LocalTrainer
    from fedledger.trainer.models import get_adapter_state

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    model, tokenizer, _ = load_demo_model("minilm", seed, lora="pooler")
    genesis = get_adapter_state(model)
    got = {name: tuple(v.shape) for name, v in genesis.items()}
    if got != DEMO_ADAPTER:
        raise RuntimeError(f"the demo's adapter is no longer DEMO_ADAPTER's shapes: {got}")
    train_rows, _ = split_rows(load_breast_cancer_text(style="levels"), test_fraction=0.2, seed=seed)
    parts = partition_dirichlet(train_rows.labels, members, alpha=1.0, seed=seed)
    train = demo_train_config(epsilon=epsilon, seed=seed)
    privacy = demo_privacy_config(epsilon, rounds=rounds)
    updates = []
    for i, part in enumerate(parts):
        tensors = to_tensor_dataset(train_rows.subset(part), tokenizer, max_length=train.max_length)
        trainer = LocalTrainer(model, train=replace(train, seed=train.seed + 1000 * i), privacy=privacy)
        result = trainer.train_round(genesis, tensors, round_id=1)
        updates.append({name: t.detach().to(torch.float64).numpy() for name, t in result.delta.items()})
        logger.info("member %d: %d rows, ε %.2f", i, len(part), result.epsilon or float("nan"))
    kind = f"real DP-SGD (ε = {epsilon:g} over {rounds} rounds, round 1)"
    return updates, kind

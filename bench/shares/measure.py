"""The measurements of the shares study: one round of LoRA-like updates per dimension, shared and sealed for K
organisations, sketched and summed by them; the plaintext mode on the same updates; the sketch's accuracy.

Everything runs in this process on one thread, so times are compute only: no ledger, no transport.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from fedledger.anomaly.features import SKETCH_BLOCKS, count_sketch, ring_sketch, update_features
from fedledger.chaincode.records import Rules
from fedledger.chaincode.weights import WEIGHT_UNITS
from fedledger.sdk.store import UpdateStore
from fedledger.shares import (
    DEFAULT_SCALE,
    SealedShare,
    Share,
    combine,
    decode_fixed,
    generate_key,
    open_share,
    share_update,
    sum_shares,
)
from fedledger.tensors import Manifest, NDState, decode, encode, manifest, num_parameters, sha256_hex

logger = logging.getLogger("bench.shares")

T = TypeVar("T")

RANK = 8
LAYERS = 4
ROUND = 1
#: The sketch size the detector uses (the rules' default).
SKETCH_DIM = Rules().sketch_dim
#: Targets of issue 13.
NORM_TARGET = 0.05
COSINE_TARGET = 0.05
RATIO_TARGET = 1.3


def lora_shapes(d: int) -> dict[str, tuple[int, int]]:
    """Rank-8 A (8 x w) and B (w x 8) of 4 layers, w chosen so that the total is about ``d`` values."""
    width = max(1, d // (2 * LAYERS * RANK))
    return {
        f"layers.{layer}.q_proj.lora_{part}": (RANK, width) if part == "A" else (width, RANK)
        for layer in range(LAYERS)
        for part in ("A", "B")
    }


class RoundFactory:
    """Updates of one round: a direction every member shares, a rank-2 part of the member's own, DP-like noise."""

    def __init__(self, shapes: dict[str, tuple[int, int]], seed: int) -> None:
        self.shapes = shapes
        self.rng = np.random.default_rng(seed)
        self.direction = {k: self.rng.standard_normal(s) for k, s in shapes.items()}

    def member(self) -> NDState:
        out = {}
        for name, (rows, cols) in self.shapes.items():
            own = self.rng.standard_normal((rows, 2)) @ self.rng.standard_normal((2, cols)) / np.sqrt(2.0)
            noise = self.rng.standard_normal((rows, cols))
            out[name] = (0.01 * self.direction[name] + 0.01 * own + 0.01 * noise).astype(np.float32)
        return out


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def round_seed(commitments: Sequence[str]) -> int:
    """The round's sketch seed from every commitment of the round (sorted): fixed only once all are in."""
    digest = hashlib.sha256(f"fedledger/sketch/{ROUND}/".encode() + "".join(sorted(commitments)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def integer_weights(n: int) -> list[int]:
    """n integer weights summing to WEIGHT_UNITS, unequal (as the contract's are)."""
    raw = np.arange(1, n + 1, dtype=np.float64)
    weights = [int(w) for w in np.floor(raw / raw.sum() * WEIGHT_UNITS)]
    weights[-1] += WEIGHT_UNITS - sum(weights)
    return weights


def sketch_errors(updates: Sequence[NDState], sketches: np.ndarray) -> dict[str, float]:
    """Norm relative errors and pairwise cosine absolute errors of the sketches against the exact float64 values."""
    flat = np.stack([np.concatenate([u[k].astype(np.float64).ravel() for k in sorted(u)]) for u in updates])
    norms = np.linalg.norm(flat, axis=1)
    estimated = np.linalg.norm(sketches, axis=1)
    norm_errors = np.abs(estimated - norms) / norms
    exact_cos = (flat @ flat.T) / np.outer(norms, norms)
    est_cos = (sketches @ sketches.T) / np.outer(estimated, estimated)
    pairs = np.triu_indices(len(updates), k=1)
    cos_errors = np.abs(est_cos - exact_cos)[pairs]
    return {
        "updates": len(updates),
        "pairs": int(cos_errors.size),
        "norm_rel_error_median": float(np.median(norm_errors)),
        "norm_rel_error_p90": float(np.quantile(norm_errors, 0.9)),
        "cosine_abs_error_median": float(np.median(cos_errors)) if cos_errors.size else float("nan"),
        "cosine_abs_error_p90": float(np.quantile(cos_errors, 0.9)) if cos_errors.size else float("nan"),
        "exact_cosine_median": float(np.median(exact_cos[pairs])) if cos_errors.size else float("nan"),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _org_names(k: int) -> list[str]:
    return [f"Org{i + 1}MSP" for i in range(k)]


def _participant(j: int) -> str:
    return f"Org1MSP:member-{j}"


class SharedMode:
    """The shares mode at one K: the organisations' keys and every member's sealed shares."""

    def __init__(self, k: int, m: Manifest) -> None:
        self.k = k
        self.manifest = m
        self.keys = {org: generate_key() for org in _org_names(k)}
        self.publics = {org: key.public_key() for org, key in self.keys.items()}
        self.sealed: list[list[SealedShare]] = []
        self.seed = 0

    def member(self, j: int, update: NDState) -> None:
        self.sealed.append(
            share_update(update, self.publics, round=ROUND, participant=_participant(j), manifest=self.manifest)
        )

    def fix_seed(self) -> None:
        """Once every share of the round is committed, the seed follows from all the commitments."""
        self.seed = round_seed([s.commitment for shares in self.sealed for s in shares])

    def open(self, j: int, index: int) -> Share:
        s = self.sealed[j][index]
        return open_share(
            s.sealed,
            self.keys[s.org],
            org=s.org,
            round=ROUND,
            participant=_participant(j),
            manifest=self.manifest,
            commitment=s.commitment,
        )[0]

    def sketch(self, j: int, index: int) -> np.ndarray:
        """What organisation ``index`` computes for member j's update: open, verify, ring sketch of its share."""
        return ring_sketch(self.open(j, index).values, SKETCH_DIM, self.seed, SKETCH_BLOCKS)

    def org_sum(self, n: int, index: int, weights: Sequence[int]) -> Share:
        return sum_shares((self.open(j, index) for j in range(n)), weights)


class PlainMode:
    """Today's mode: each member's encoded update sealed into the one-key UpdateStore."""

    def __init__(self, folder: str, m: Manifest) -> None:
        self.store = UpdateStore(folder, bytes(range(32)))
        self.folder = Path(folder)
        self.manifest = m
        self.digests: list[str] = []
        self.payloads: list[bytes] = []  # what the peers receive as transient data

    def member(self, update: NDState) -> None:
        data = encode(update)
        self.digests.append(self.store.put(data))
        self.payloads.append(data)

    def sealed_bytes(self) -> int:
        digest = self.digests[0]
        return (self.folder / digest[:2] / f"{digest}.sealed").stat().st_size

    def features(self, j: int) -> dict[str, Any]:
        """What every endorsing peer computes today at SubmitUpdate from the transient bytes."""
        data = self.payloads[j]
        sha256_hex(data)
        return update_features(decode(data, expected=self.manifest), sketch_dim=SKETCH_DIM)

    def sketch(self, j: int) -> np.ndarray:
        return count_sketch(decode(self.payloads[j]), SKETCH_DIM, blocks=SKETCH_BLOCKS)

    def aggregate(self, n: int, weights: Sequence[int]) -> NDState:
        total = {k: np.zeros(s[0], np.float64) for k, s in self.manifest.items()}
        for digest, w in zip(self.digests[:n], weights, strict=True):
            for name, values in decode(self.store.get(digest), expected=self.manifest).items():
                total[name] += (w / WEIGHT_UNITS) * values.astype(np.float64)
        return total


def _tmpfs() -> str | None:
    """A memory-backed folder for the store, so disk speed does not enter the plaintext member's time."""
    return "/dev/shm" if Path("/dev/shm").is_dir() else None


def measure_dimension(
    updates: Sequence[NDState], orgs: Sequence[int], members: Sequence[int], repeats: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Both modes on one round of ``updates``, interleaved step by step (each member's plaintext step, then its
    shares for every K; each update's peer step, then every organisation's) so that a change in the machine's
    load during the run hits both modes alike. Returns the cells, the round rows and the sketch accuracy."""
    m = manifest(updates[0])
    d = num_parameters(m)
    with tempfile.TemporaryDirectory(prefix="fedledger-bench-shares-", dir=_tmpfs()) as folder:
        plain = PlainMode(folder, m)
        modes = {k: SharedMode(k, m) for k in orgs}
        times: dict[str, list[float]] = {}

        def sample(key: str, fn: Callable[[], T]) -> T:
            result, seconds = timed(fn)
            times.setdefault(key, []).append(seconds)
            return result

        for j, update in enumerate(updates):
            sample("member plain", lambda u=update: plain.member(u))
            for k, mode in modes.items():
                sample(f"member {k}", lambda mode=mode, j=j, u=update: mode.member(j, u))
        for mode in modes.values():
            mode.fix_seed()
        estimates: dict[int, list[np.ndarray]] = {k: [] for k in orgs}
        for j in range(len(updates)):
            sample("features plain", lambda j=j: plain.features(j))
            sample("sketch plain", lambda j=j: plain.sketch(j))
            for k, mode in modes.items():
                parts = [sample(f"sketch {k}", lambda mode=mode, j=j, i=i: mode.sketch(j, i)) for i in range(k)]
                estimates[k].append(decode_fixed({"s": combine([{"s": p} for p in parts])["s"]})["s"])
        rounds, worst = [], dict.fromkeys(orgs, 0.0)
        for n in members:
            weights = integer_weights(n)
            for _ in range(repeats):
                sample(f"sum plain {n}", lambda n=n, w=weights: plain.aggregate(n, w))
                for k, mode in modes.items():
                    sample(f"sum {k} {n}", lambda mode=mode, n=n, w=weights: mode.org_sum(n, 0, w))
            expected = plain.aggregate(n, weights)
            for k, mode in modes.items():
                sums = [mode.org_sum(n, i, weights) for i in range(k)]
                mean = sample(
                    f"combine {k} {n}",
                    lambda sums=sums: decode_fixed(combine([s.values for s in sums]), divisor=WEIGHT_UNITS),
                )
                worst[k] = max(worst[k], max(float(np.abs(mean[x] - expected[x]).max()) for x in m))
        cells = [
            {
                "d": d,
                "k": k,
                "member_shares_s": median(times[f"member {k}"]),
                "member_plain_s": median(times["member plain"]),
                "org_open_sketch_s": median(times[f"sketch {k}"]),
                "peer_features_s": median(times["features plain"]),
                "peer_sketch_s": median(times["sketch plain"]),
                "bytes_shares": sum(len(s.sealed) for s in mode.sealed[0]),
                "bytes_plain_sealed": plain.sealed_bytes(),
                "samples_member": len(times[f"member {k}"]),
                "samples_sketch": len(times[f"sketch {k}"]),
                "max_mean_error": worst[k],
            }
            for k, mode in modes.items()
        ]
    for cell in cells:
        k = cell["k"]
        for n in members:
            org_sum, plain_sum = median(times[f"sum {k} {n}"]), median(times[f"sum plain {n}"])
            combine_s = median(times[f"combine {k} {n}"])
            shares_round = cell["member_shares_s"] + n * cell["org_open_sketch_s"] + org_sum + combine_s
            plain_round = cell["member_plain_s"] + n * cell["peer_features_s"] + plain_sum
            sketch_only = cell["member_plain_s"] + n * cell["peer_sketch_s"] + plain_sum
            rounds.append(
                {
                    "d": d,
                    "k": k,
                    "n": n,
                    "org_sum_s": org_sum,
                    "combine_s": combine_s,
                    "plain_aggregate_s": plain_sum,
                    "round_shares_s": shares_round,
                    "round_plain_s": plain_round,
                    "ratio": shares_round / plain_round,
                    "round_plain_sketch_only_s": sketch_only,
                    "ratio_sketch_only": shares_round / sketch_only,
                }
            )
    k = max(orgs)
    accuracy = {"d": d, "k": k, **sketch_errors(updates, np.stack(estimates[k]))}
    logger.info("d=%d done: %s", d, {c["k"]: round(c["member_shares_s"], 4) for c in cells})
    return cells, rounds, accuracy


def run_study(
    *, dims: Sequence[int], orgs: Sequence[int], members: Sequence[int], repeats: int, seed: int
) -> dict[str, Any]:
    """Every cell of the study; the report dict the render module turns into tables."""
    cells: list[dict[str, Any]] = []
    rounds: list[dict[str, Any]] = []
    accuracy: list[dict[str, Any]] = []
    for d in dims:
        factory = RoundFactory(lora_shapes(d), seed + d)
        updates = [factory.member() for _ in range(max(members))]
        more_cells, more_rounds, one = measure_dimension(updates, orgs, members, repeats)
        cells += more_cells
        rounds += more_rounds
        accuracy.append(one)
    return {
        "cells": cells,
        "rounds": rounds,
        "accuracy": accuracy,
        "sketch_dim": SKETCH_DIM,
        "scale": DEFAULT_SCALE,
        "sketch_blocks": SKETCH_BLOCKS,
        "rank": RANK,
        "layers": LAYERS,
        "targets": {"norm": NORM_TARGET, "cosine": COSINE_TARGET, "ratio": RATIO_TARGET},
    }

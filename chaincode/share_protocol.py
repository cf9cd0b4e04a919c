"""Secret-shared rounds: what the contract derives from shares, commitments and share sketches. Pure: no ledger.

A shared round (``Round.share_holders`` not empty) never sees a member's update. The member splits its
fixed-point update into one additive share per holder organisation (:mod:`fedledger.shares`), seals each to
that organisation's key, and commits the shares' SHA-256 at SubmitUpdate. After CloseRound fixes the sketch
seed, each organisation sketches its own shares in a transaction only its own peers endorse; the sketches add
up (mod 2^64) to the count sketch of the update, which the detector reads as in plaintext mode
(:func:`summed_features`). Each organisation then sums its shares of exactly the accepted updates, and
CommitAggregate adds the organisations' sums: the weighted mean, decoded (:func:`mean_of_sums`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedledger import shares
from fedledger.anomaly.features import SKETCH_BLOCKS, encode_sketch, ring_sketch, sketch_groups
from fedledger.tensors import Manifest, NDState

__all__ = [
    "commitments_digest",
    "decode_ring_sketch",
    "encode_ring_sketch",
    "mean_of_sums",
    "ring_sketch_of",
    "seed_number",
    "sketch_blocks",
    "sketch_seed",
    "sum_inputs_digest",
    "summed_features",
    "summed_sketch",
]

_WORD = np.dtype("<u8")


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def commitments_digest(commitments: Sequence[str]) -> str:
    """The update's identity in a shared round: SHA-256 of its share commitments, in share-index order."""
    return hashlib.sha256(_canonical(list(commitments))).hexdigest()


def sketch_seed(number: int, update_hashes: Sequence[str], close_tx: str) -> str:
    """The round's sketch seed: SHA-256 over the round, every committed update (sorted) and the closing
    transaction's id. Fixed only once every share is committed, so a member cannot aim at the sketch's blind
    spots; the closing transaction's id is a nonce the closer picks, so a closer colluding with a member could
    grind it (one hash and one sketch per try): the residual risk the README states."""
    material = {"close_tx": close_tx, "round": number, "updates": sorted(update_hashes)}
    return hashlib.sha256(b"fedledger/sketch-seed/v1\x00" + _canonical(material)).hexdigest()


def seed_number(seed: str) -> int:
    """The integer seed :func:`fedledger.anomaly.features.count_sketch` takes, from the hex seed."""
    return int(seed[:16], 16)


def sketch_blocks(manifest: Manifest) -> int:
    """How many layer-group blocks the count sketch of an update of ``manifest`` has."""
    return len(sketch_groups(list(manifest), SKETCH_BLOCKS))


def encode_ring_sketch(sketch: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(sketch, dtype=_WORD).tobytes()).decode("ascii")


def decode_ring_sketch(text: str, dim: int) -> np.ndarray:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) != 8 * dim:
        raise ValueError(f"a ring sketch of dimension {dim} has {8 * dim} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=_WORD).astype(np.uint64)


def ring_sketch_of(share: shares.Share, dim: int, seed: str) -> np.ndarray:
    """The ring sketch of one share under the round's seed (an organisation's part of the update's sketch)."""
    return ring_sketch(share.values, dim, seed=seed_number(seed), blocks=SKETCH_BLOCKS)


def summed_sketch(parts: Sequence[np.ndarray], *, scale: int, divisor: int = 1) -> np.ndarray:
    """The float sketch the organisations' ring sketches add up to (``divisor``: a weighted sum's total weight)."""
    total = shares.combine([{"s": np.asarray(p, dtype=np.uint64)} for p in parts])
    return shares.decode_fixed(total, scale=scale, divisor=divisor)["s"]


def summed_features(parts: Sequence[np.ndarray], *, scale: int, manifest: Manifest) -> dict[str, Any]:
    """What the detector reads of one shared update: its count sketch (the parts' sum) and the norm estimated
    from it. The exact statistics of plaintext mode (max, mean, sparsity, layer norms) need the update itself."""
    sketch = summed_sketch(parts, scale=scale)
    return {
        "sketch": encode_sketch(sketch),
        "sketch_blocks": sketch_blocks(manifest),
        "l2_norm": float(np.linalg.norm(sketch)),
        "num_params": int(sum(int(np.prod(shape)) for shape, _dtype in manifest.values())),
        "source": "share-sketches",
    }


def sum_inputs_digest(updates: Sequence[tuple[str, int]]) -> str:
    """What an organisation's sum is a sum of: the accepted updates' hashes and weights, in hash order."""
    return hashlib.sha256(_canonical(sorted([h, int(w)] for h, w in updates))).hexdigest()


def mean_of_sums(sums: Sequence[Mapping[str, np.ndarray]], *, scale: int, total_weight: int) -> NDState:
    """The weighted mean delta from the organisations' weighted share sums: their ring sum, decoded."""
    return shares.decode_fixed(shares.combine(list(sums)), scale=scale, divisor=total_weight)

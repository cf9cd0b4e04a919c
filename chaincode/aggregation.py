"""The aggregation arithmetic: how accepted update deltas become the next global model, element by element.

One module for both sides: the endorsing peers recompute every aggregate with it at CommitAggregate
(:mod:`fedledger.chaincode.transactions.aggregate`), and the aggregator's strategies
(:mod:`fedledger.trainer.aggregate`, :mod:`fedledger.trainer.strategy`) build the model they commit with it,
so the two are bit-identical. Pure: numpy and :mod:`fedledger.tensors` only.

**Arithmetic.** float64, element-wise; the updates in a fixed order, **sorted by update hash**; their FedAvg
weights ``w_i`` are the ledger's integer units (``Update.weight``) and ``W = sum(w_i)``::

    avg = sum_i (w_i / W) * delta_i              accumulated from 0.0, in update-hash order
    fedavg:   x' = x + server_lr * avg
    fedadam:  m' = beta_1 m + (1 - beta_1) avg;   v' = beta_2 v + (1 - beta_2) avg^2
              x' = x + eta * m' / (sqrt(v') + tau)                  (Reddi et al. 2021, no bias correction)

``x'`` is cast once, to the model's dtype (the manifest's, per tensor); FedAdam's ``m'`` and ``v'`` to float32:
they are the optimiser state committed with the model (a safetensors file of ``m/<tensor>`` and
``v/<tensor>``, :func:`encode_moments`), and the next round starts from them (zero before the first step).
Every operation is an IEEE-754 element-wise one (no reduction across elements), so any split of the elements
gives the same bits as the whole state.

**Chunks.** A state's flat element sequence is its tensors in manifest order (names sorted), each in C order.
Chunk ``k`` at chunk size ``E`` (the rule ``aggregate_chunk_elements``) holds elements ``[k E, (k+1) E)``;
its bytes are the raw little-endian bytes of those elements, each in its tensor's dtype, and its hash the hex
SHA-256 of those bytes. The ledger records the chunk hashes of every update (SubmitUpdate), model and
optimiser state, so that a transaction can check and aggregate any run of chunks on its own.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedledger.tensors import DTYPES, Manifest, NDState, decode, encode

__all__ = [
    "BASE_FIELD",
    "DEFAULT_CHUNK_ELEMENTS",
    "MODEL_FIELD",
    "MOMENTS",
    "M_FIELD",
    "OPTIMIZER_FIELD",
    "SERVER_OPTIMIZERS",
    "UPDATE_PREFIX",
    "V_FIELD",
    "Layout",
    "ServerOptimizer",
    "aggregate_state",
    "aggregate_values",
    "covering",
    "decode_moments",
    "encode_moments",
    "moments_manifest",
    "server_step",
    "update_field",
    "weighted_mean",
]

#: Default of the rule ``aggregate_chunk_elements``: 256 KiB of float32 per update and chunk, so that one chunk
#: of 100 updates (25.6 MB of transient data) fits in one proposal.
DEFAULT_CHUNK_ELEMENTS = 65_536
SERVER_OPTIMIZERS = ("fedavg", "fedadam")
#: The optimiser states a stateful server optimiser keeps, in file (name) order.
MOMENTS = ("m", "v")

# Transient fields of AggregateChunks and CommitAggregate (the contract reads them, the SDK writes them).
MODEL_FIELD = "model"  # the new model: a safetensors file (CommitAggregate)
OPTIMIZER_FIELD = "optimizer_state"  # FedAdam's new m and v: a safetensors file (CommitAggregate)
BASE_FIELD = "base"  # the base model's chunks covering the chunks aggregated, concatenated
M_FIELD = "m"  # the base model's optimiser state, the same chunks (FedAdam, after its first step)
V_FIELD = "v"
UPDATE_PREFIX = "update/"  # + update hash: that update's chunks, concatenated


def update_field(update_hash: str) -> str:
    return UPDATE_PREFIX + update_hash


# -- the server optimiser -------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerOptimizer:
    """The server step the rules name: FedAvg (``server_lr``) or FedAdam (``eta``, ``beta_1``, ``beta_2``,
    ``tau``). The parameters of the other optimiser are ignored (and :meth:`describe` leaves them out)."""

    name: str = "fedavg"
    server_lr: float = 1.0
    eta: float = 1e-2
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 1e-3

    def __post_init__(self) -> None:
        if self.name not in SERVER_OPTIMIZERS:
            raise ValueError(f"unknown server optimiser {self.name!r}; choose one of {', '.join(SERVER_OPTIMIZERS)}")

    @classmethod
    def from_rules(cls, rules: Any) -> ServerOptimizer:
        """The optimiser of a :class:`~fedledger.chaincode.records.Rules` record."""
        return cls(
            name=rules.server_optimizer,
            server_lr=float(rules.server_lr),
            eta=float(rules.fedadam_eta),
            beta_1=float(rules.fedadam_beta_1),
            beta_2=float(rules.fedadam_beta_2),
            tau=float(rules.fedadam_tau),
        )

    @property
    def stateful(self) -> bool:
        """Whether it keeps moments that are committed with every model."""
        return self.name == "fedadam"

    def describe(self) -> dict[str, Any]:
        """Name and the parameters that matter, e.g. ``{"name": "fedavg", "server_lr": 1.0}``."""
        if self.stateful:
            return {"name": self.name, "eta": self.eta, "beta_1": self.beta_1, "beta_2": self.beta_2, "tau": self.tau}
        return {"name": self.name, "server_lr": self.server_lr}

    def rules(self) -> dict[str, Any]:
        """The rules patch naming this optimiser (for InitConsortium or a rules proposal)."""
        patch: dict[str, Any] = {"server_optimizer": self.name}
        if self.stateful:
            patch.update(fedadam_eta=self.eta, fedadam_beta_1=self.beta_1, fedadam_beta_2=self.beta_2)
            patch["fedadam_tau"] = self.tau
        else:
            patch["server_lr"] = self.server_lr
        return patch

    def same_as(self, other: ServerOptimizer) -> bool:
        """Equal in what the arithmetic uses (the other optimiser's parameters do not count)."""
        return self.describe() == other.describe()


# -- the arithmetic -------------------------------------------------------------------------------


def weighted_mean(updates: Iterable[tuple[np.ndarray, int]], total_weight: int) -> np.ndarray:
    """``sum_i (w_i / W) delta_i`` in float64, accumulated from 0.0 in the order ``updates`` yields them.

    ``updates`` yields ``(delta, weight)`` (it may be a generator that reads and checks each delta);
    ``total_weight`` is ``W``, the sum of all the weights.
    """
    if total_weight <= 0:
        raise ValueError(f"the weights must sum to a positive number, got {total_weight}")
    total = float(total_weight)
    avg: np.ndarray | None = None
    for count, (delta, weight) in enumerate(updates):
        if weight <= 0:
            raise ValueError(f"update {count} has weight {weight}; accepted updates have positive weights")
        d = np.asarray(delta, dtype=np.float64)
        if avg is None:
            avg = np.zeros(d.shape, dtype=np.float64)
        elif d.shape != avg.shape:
            raise ValueError(f"update {count} has shape {d.shape}, update 0 {avg.shape}")
        avg += d * (weight / total)
    if avg is None:
        raise ValueError("nothing to aggregate: no accepted update")
    return avg


def server_step(
    base: np.ndarray,
    avg: np.ndarray,
    optimizer: ServerOptimizer,
    m: np.ndarray | None = None,
    v: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(x', m', v')`` in float64 from the base values and the weighted mean delta (``m'``, ``v'`` None for
    FedAvg); ``m`` and ``v`` are the previous moments (None: zero)."""
    x = np.asarray(base, dtype=np.float64)
    d = np.asarray(avg, dtype=np.float64)
    if d.shape != x.shape:
        raise ValueError(f"the mean delta has shape {d.shape}, the base {x.shape}")
    if not optimizer.stateful:
        return x + optimizer.server_lr * d, None, None
    m_prev = np.zeros_like(x) if m is None else np.asarray(m, dtype=np.float64)
    v_prev = np.zeros_like(x) if v is None else np.asarray(v, dtype=np.float64)
    m_new = optimizer.beta_1 * m_prev + (1.0 - optimizer.beta_1) * d
    v_new = optimizer.beta_2 * v_prev + (1.0 - optimizer.beta_2) * d * d
    return x + optimizer.eta * m_new / (np.sqrt(v_new) + optimizer.tau), m_new, v_new


def aggregate_values(
    base: np.ndarray,
    updates: Iterable[tuple[np.ndarray, int]],
    total_weight: int,
    optimizer: ServerOptimizer,
    m: np.ndarray | None = None,
    v: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The new values of some elements, float64: ``(x', m', v')`` (``m'``, ``v'`` None for FedAvg).

    ``base`` and every update delta hold the same elements (any shape, any float dtype); ``updates`` yields
    ``(delta, weight)`` in update-hash order; ``total_weight`` is the sum of all the round's weights. ``m`` and
    ``v`` are the previous moments of those elements (None: zero).
    """
    return server_step(base, weighted_mean(updates, total_weight), optimizer, m, v)


def aggregate_state(
    base: Mapping[str, np.ndarray],
    updates: Sequence[tuple[Mapping[str, np.ndarray], int]],
    optimizer: ServerOptimizer,
    moments: tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]] | None = None,
) -> tuple[NDState, NDState | None, NDState | None]:
    """The whole new state, tensor by tensor: ``(model, m, v)``; ``m`` and ``v`` None for FedAvg.

    ``base`` is the round's base model (numpy arrays: the result keeps each tensor's dtype); ``updates`` are
    ``(delta, weight)`` pairs **sorted by update hash**; ``moments`` the base model's ``(m, v)`` (None or
    empty: zero). The same bits as aggregating chunk by chunk.
    """
    if not updates:
        raise ValueError("nothing to aggregate: no accepted update")
    names = sorted(base)
    for i, (delta, _weight) in enumerate(updates):
        if sorted(delta) != names:
            raise ValueError(f"update {i} has other tensors than the base, e.g. {sorted(set(delta) ^ set(names))[:3]}")
    total = sum(int(w) for _d, w in updates)
    m_prev, v_prev = moments if moments else ({}, {})
    model: NDState = {}
    m_out: NDState = {}
    v_out: NDState = {}
    for name in names:
        x, m, v = aggregate_values(
            base[name], ((d[name], int(w)) for d, w in updates), total, optimizer, m_prev.get(name), v_prev.get(name)
        )
        model[name] = x.astype(np.asarray(base[name]).dtype)
        if m is not None and v is not None:
            m_out[name], v_out[name] = m.astype(np.float32), v.astype(np.float32)
    if not optimizer.stateful:
        return model, None, None
    return model, m_out, v_out


# -- the optimiser state file ---------------------------------------------------------------------


def moments_manifest(manifest: Manifest) -> Manifest:
    """The manifest of an optimiser state file: ``m/<name>`` and ``v/<name>``, float32, the model's shapes."""
    return {f"{moment}/{name}": [list(spec[0]), "F32"] for moment in MOMENTS for name, spec in sorted(manifest.items())}


def encode_moments(m: Mapping[str, np.ndarray], v: Mapping[str, np.ndarray]) -> bytes:
    """The optimiser state file of moments ``m`` and ``v`` (float32, deterministic bytes)."""
    state = {f"m/{name}": value for name, value in m.items()} | {f"v/{name}": value for name, value in v.items()}
    return encode(state)


def decode_moments(data: bytes, manifest: Manifest) -> tuple[NDState, NDState]:
    """``(m, v)`` of an optimiser state file for a model of ``manifest`` (TensorFormatError if it does not fit)."""
    state = decode(data, expected=moments_manifest(manifest), what="optimizer state")
    return (
        {name: state[f"m/{name}"] for name in sorted(manifest)},
        {name: state[f"v/{name}"] for name in sorted(manifest)},
    )


# -- chunks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    start: int  # first element in the flat sequence
    size: int  # elements
    byte_start: int


def covering(start: int, stop: int, chunk_elements: int) -> range:
    """The chunks (at ``chunk_elements``) that hold elements ``[start, stop)``."""
    return range(start // chunk_elements, -(-stop // chunk_elements))


class Layout:
    """Where each element of a state lives in its flat sequence and in its chunks (see the module docstring)."""

    def __init__(self, manifest: Manifest) -> None:
        segments = []
        start = byte_start = 0
        for name in sorted(manifest):
            shape, dtype_name = manifest[name]
            dtype = DTYPES[str(dtype_name)].newbyteorder("<")
            size = math.prod(int(d) for d in shape)
            segments.append(_Segment(name, tuple(int(d) for d in shape), dtype, start, size, byte_start))
            start += size
            byte_start += size * dtype.itemsize
        self.manifest = manifest
        self.segments = tuple(segments)
        self.elements = start
        self.nbytes = byte_start
        self._starts = [s.start for s in segments]
        self._uniform = len({s.dtype for s in segments}) == 1

    @classmethod
    def of_moments(cls, manifest: Manifest) -> Layout:
        """The layout of one moment (``m`` or ``v``) of a model of ``manifest``: its shapes, float32."""
        return cls({name: [list(spec[0]), "F32"] for name, spec in manifest.items()})

    # -- geometry ---------------------------------------------------------------------------
    def chunk_count(self, chunk_elements: int) -> int:
        return -(-self.elements // chunk_elements)

    def chunk_range(self, k: int, chunk_elements: int) -> tuple[int, int]:
        """Elements ``[start, stop)`` of chunk ``k``."""
        return k * chunk_elements, min((k + 1) * chunk_elements, self.elements)

    def chunks_range(self, first: int, count: int, chunk_elements: int) -> tuple[int, int]:
        """Elements ``[start, stop)`` of chunks ``first .. first + count - 1``."""
        return first * chunk_elements, min((first + count) * chunk_elements, self.elements)

    def byte_offset(self, element: int) -> int:
        """Offset in the flat bytes of element ``element`` (``self.elements`` gives the total size)."""
        if element >= self.elements:
            return self.nbytes
        seg = self.segments[bisect.bisect_right(self._starts, element) - 1]
        return seg.byte_start + (element - seg.start) * seg.dtype.itemsize

    def nbytes_of(self, start: int, stop: int) -> int:
        """Bytes of elements ``[start, stop)``."""
        return self.byte_offset(stop) - self.byte_offset(start)

    # -- bytes of a state -------------------------------------------------------------------
    def flat_bytes(self, state: Mapping[str, np.ndarray]) -> bytes:
        """The flat little-endian bytes of ``state``, which must match the layout's names, shapes and dtypes."""
        if sorted(state) != [s.name for s in self.segments]:
            raise ValueError(
                f"the state's tensors are not the manifest's, e.g. {sorted(set(state) ^ set(self.manifest))[:3]}"
            )
        parts = []
        for seg in self.segments:
            array = np.asarray(state[seg.name])
            if array.shape != seg.shape or array.dtype.newbyteorder("<") != seg.dtype:
                raise ValueError(
                    f"tensor {seg.name!r} is {array.dtype} {list(array.shape)}; "
                    f"the manifest says {seg.dtype} {list(seg.shape)}"
                )
            parts.append(np.ascontiguousarray(array, dtype=seg.dtype).tobytes())
        return b"".join(parts)

    def chunk_bytes(self, flat: bytes, k: int, chunk_elements: int) -> memoryview:
        """Chunk ``k`` of flat bytes (as :meth:`flat_bytes` gives them)."""
        start, stop = self.chunk_range(k, chunk_elements)
        return memoryview(flat)[self.byte_offset(start) : self.byte_offset(stop)]

    def range_bytes(self, flat: bytes, start: int, stop: int) -> memoryview:
        """Elements ``[start, stop)`` of flat bytes."""
        return memoryview(flat)[self.byte_offset(start) : self.byte_offset(stop)]

    def chunk_hashes(self, state: Mapping[str, np.ndarray], chunk_elements: int) -> list[str]:
        """The hash of every chunk of ``state``."""
        flat = self.flat_bytes(state)
        return [
            hashlib.sha256(self.chunk_bytes(flat, k, chunk_elements)).hexdigest()
            for k in range(self.chunk_count(chunk_elements))
        ]

    # -- values ------------------------------------------------------------------------------
    def _pieces(self, start: int, stop: int) -> Iterable[tuple[_Segment, int, int]]:
        """The segments that hold elements ``[start, stop)``, each with its first and end element."""
        if not 0 <= start <= stop <= self.elements:
            raise ValueError(f"elements [{start}, {stop}) are outside the state's {self.elements}")
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        while i < len(self.segments) and self.segments[i].start < stop:
            seg = self.segments[i]
            a, b = max(start, seg.start), min(stop, seg.start + seg.size)
            if a < b:
                yield seg, a, b
            i += 1

    def to_float64(self, data: bytes | memoryview, start: int, stop: int) -> np.ndarray:
        """Elements ``[start, stop)`` as float64, from exactly their bytes."""
        expected = self.nbytes_of(start, stop)
        if len(data) != expected:
            raise ValueError(f"elements [{start}, {stop}) take {expected} bytes, got {len(data)}")
        if self._uniform:
            return np.frombuffer(data, dtype=self.segments[0].dtype).astype(np.float64)
        out = np.empty(stop - start, dtype=np.float64)
        offset = 0
        for seg, a, b in self._pieces(start, stop):
            out[a - start : b - start] = np.frombuffer(data, dtype=seg.dtype, count=b - a, offset=offset)
            offset += (b - a) * seg.dtype.itemsize
        return out

    def from_float64(self, values: np.ndarray, start: int) -> bytes:
        """The bytes of elements ``[start, start + len(values))`` holding ``values``, each cast to its dtype."""
        stop = start + len(values)
        if self._uniform and 0 <= start <= stop <= self.elements:
            return values.astype(self.segments[0].dtype).tobytes()
        return b"".join(
            values[a - start : b - start].astype(seg.dtype).tobytes() for seg, a, b in self._pieces(start, stop)
        )


def inputs_digest(
    *,
    base: str,
    base_chunk_elements: int,
    base_optimizer_state: str | None,
    chunk_elements: int,
    optimizer: ServerOptimizer,
    updates: Sequence[tuple[str, int]],
) -> str:
    """What a chunk's result depends on, as one hash: a chunk aggregated from other inputs never counts."""
    import json

    record = {
        "base": base,
        "base_chunk_elements": base_chunk_elements,
        "base_optimizer_state": base_optimizer_state,
        "chunk_elements": chunk_elements,
        "optimizer": dataclasses.asdict(optimizer),
        "updates": [[h, int(w)] for h, w in sorted(updates)],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

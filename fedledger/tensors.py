"""The tensor codec: safetensors bytes ↔ numpy arrays, checked against a manifest.

This is the one wire format of fedledger. Members encode their LoRA deltas with it, the contract decodes and
checks every update and aggregate with it, the aggregator, the audit and the benchmarks read the stored bytes
back with it. It needs only numpy and safetensors, so the endorsing peers can import it without torch.

- ``encode`` writes float32 by default, tensors sorted by name: the same state always gives the same bytes, so
  the SHA-256 of the bytes is a stable commitment.
- A *manifest* ``{name: [shape, dtype]}`` (dtype as safetensors spells it: ``"F16"``, ``"F32"``, ``"F64"``) lists
  what a payload holds. The genesis model's manifest fixes the names, shapes and dtype of every later update and
  aggregate; :func:`decode` with ``expected`` refuses anything else, so an update that the aggregator could not
  combine never gets past SubmitUpdate.
- Every refusal is a :class:`TensorFormatError` (a ``ValueError``) naming the tensor at fault.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "DTYPES",
    "Manifest",
    "NDState",
    "State",
    "TensorFormatError",
    "check_manifest",
    "decode",
    "encode",
    "manifest",
    "num_parameters",
    "sha256_hex",
    "to_numpy",
]

#: The dtypes a payload may hold, by their safetensors name.
DTYPES: dict[str, np.dtype] = {"F16": np.dtype(np.float16), "F32": np.dtype(np.float32), "F64": np.dtype(np.float64)}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}
#: What :func:`encode` writes unless a manifest asks for another dtype.
DEFAULT_DTYPE = "F32"

Manifest = dict[str, list[Any]]
#: A model or update state: tensor name -> array.
NDState = dict[str, np.ndarray]
#: Any state the codec accepts: arrays or torch tensors by name.
State = Mapping[str, Any]


class TensorFormatError(ValueError):
    """Bytes or tensors that are not a valid payload for the manifest."""


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of encoded bytes: the commitment the ledger records."""
    return hashlib.sha256(data).hexdigest()


def to_numpy(state: Mapping[str, Any], *, dtype: str = DEFAULT_DTYPE) -> NDState:
    """C-contiguous numpy copies of a state (torch tensors or arrays) in ``dtype``, sorted by name."""
    target = DTYPES[dtype]
    out: NDState = {}
    for name in sorted(state):
        value = state[name]
        if hasattr(value, "detach"):  # torch.Tensor, without importing torch
            value = value.detach().to("cpu").float().numpy()
        out[name] = np.ascontiguousarray(np.asarray(value, dtype=target))
    return out


def encode(
    state: Mapping[str, Any], *, like: Manifest | None = None, metadata: Mapping[str, str] | None = None
) -> bytes:
    """safetensors bytes of a state, deterministic; float32 unless ``like`` (a manifest) fixes the dtype."""
    from safetensors.numpy import save

    if not state:
        raise TensorFormatError("cannot encode an empty state")
    dtypes = {str(spec[1]) for spec in like.values()} if like else {DEFAULT_DTYPE}
    if len(dtypes) != 1 or not dtypes <= set(DTYPES):
        raise TensorFormatError(f"the manifest mixes or names unsupported dtypes {sorted(dtypes)}")
    arrays = to_numpy(state, dtype=dtypes.pop())
    return bytes(save(arrays, metadata=dict(metadata) if metadata else None))


def decode(
    data: bytes, *, expected: Manifest | None = None, require_finite: bool = True, what: str = "payload"
) -> NDState:
    """Arrays of safetensors bytes, sorted by name, in the dtype they were written in.

    With ``expected`` the names, shapes and dtypes must equal the manifest's. ``require_finite`` refuses NaN and
    infinite values. Every problem is listed in one :class:`TensorFormatError`.
    """
    from safetensors.numpy import load

    try:
        arrays = load(data)
    except Exception as exc:  # safetensors raises SafetensorError, ValueError or TypeError on garbage
        raise TensorFormatError(f"{what} is not a valid safetensors file ({len(data)} bytes): {exc}") from None
    if not arrays:
        raise TensorFormatError(f"{what} contains no tensors")
    state = {name: arrays[name] for name in sorted(arrays)}
    problems = [
        f"tensor {name!r} has dtype {array.dtype}; use float16, float32 or float64"
        for name, array in state.items()
        if array.dtype not in _NAMES
    ]
    if expected is not None and not problems:
        problems.extend(check_manifest(state, expected))
    if require_finite and not problems:
        problems.extend(
            f"tensor {name!r} contains NaN or Inf values" for name, a in state.items() if not np.isfinite(a).all()
        )
    if problems:
        more = "" if len(problems) <= 10 else f"; and {len(problems) - 10} more"
        raise TensorFormatError(f"{what}: " + "; ".join(problems[:10]) + more)
    return state


def manifest(state: Mapping[str, Any]) -> Manifest:
    """``{name: [shape as a list, dtype]}``, sorted by name. Torch tensors count as float32 (what encode writes)."""
    out: Manifest = {}
    for name in sorted(state):
        value = state[name]
        shape = getattr(value, "shape", None)
        if shape is None:
            raise TensorFormatError(f"{name} has no shape; manifest() needs tensors or arrays")
        dtype = _NAMES.get(value.dtype, DEFAULT_DTYPE) if isinstance(value, np.ndarray) else DEFAULT_DTYPE
        out[name] = [[int(d) for d in shape], dtype]
    return out


def check_manifest(state: Mapping[str, Any], expected: Manifest) -> list[str]:
    """Problems (empty when none) of a state against a manifest: missing or unexpected names, shapes, dtypes."""
    got = manifest(state)
    problems = []
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    if missing or unexpected:
        problems.append(
            f"does not match the base model's tensors (missing {len(missing)}: {missing[:5]}, "
            f"unexpected {len(unexpected)}: {unexpected[:5]})"
        )
    for name in sorted(set(got) & set(expected)):
        want_shape, want_dtype = expected[name]
        if list(want_shape) != got[name][0]:
            problems.append(f"tensor {name!r} has shape {got[name][0]}; the base model has {list(want_shape)}")
        if want_dtype != got[name][1]:
            problems.append(
                f"tensor {name!r} has dtype {got[name][1]}; the base model has {want_dtype}, encode it in {want_dtype}"
            )
    return problems


def num_parameters(manifest_or_state: Mapping[str, Any]) -> int:
    """Total number of scalars in a manifest or a state."""
    total = 0
    for value in manifest_or_state.values():
        shape = value[0] if isinstance(value, list) else value.shape
        total += math.prod(int(d) for d in shape)
    return total

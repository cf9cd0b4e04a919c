"""Adapter states and deltas as safetensors bytes, and their manifests.

The wire format of an update is a safetensors file: float32 ("F32") tensors under peft's adapter names (see
:mod:`fedledger.trainer.models`), no metadata unless given, keys in sorted order. The same state always
gives the same bytes, so its SHA-256 is a stable commitment. A *manifest* ``{name: [shape, "F32"]}`` lists
what an update must contain; the contract checks an update's names and shapes against the manifest of the
round's base model.

This module needs only numpy and safetensors (no torch), so verifiers such as the chaincode can import it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "DTYPE",
    "UpdateFormatError",
    "check_manifest",
    "from_safetensors",
    "manifest",
    "num_parameters",
    "sha256_hex",
    "to_numpy",
    "to_safetensors",
    "to_torch",
]

#: The only dtype on the wire.
DTYPE = "F32"

Manifest = dict[str, list[Any]]


class UpdateFormatError(ValueError):
    """Bytes or tensors that are not a valid update for the manifest."""


def to_numpy(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """float32, C-contiguous numpy copies of a state (torch tensors or arrays), sorted by name."""
    out: dict[str, np.ndarray] = {}
    for name in sorted(state):
        value = state[name]
        if hasattr(value, "detach"):  # torch.Tensor, without importing torch
            value = value.detach().to("cpu").float().numpy()
        out[name] = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
    return out


def to_torch(state: Mapping[str, Any]) -> dict[str, Any]:
    """float32 torch tensors of a state, sorted by name."""
    import torch

    return {name: torch.from_numpy(array.copy()) for name, array in to_numpy(state).items()}


def to_safetensors(state: Mapping[str, Any], *, metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialise a state (torch tensors or numpy arrays) to safetensors bytes, float32, deterministic."""
    from safetensors.numpy import save

    if not state:
        raise UpdateFormatError("Cannot serialise an empty state.")
    arrays = to_numpy(state)
    return bytes(save(arrays, metadata=dict(metadata) if metadata else None))


def from_safetensors(
    data: bytes, *, expected: Manifest | None = None, require_finite: bool = True
) -> dict[str, np.ndarray]:
    """Parse safetensors bytes into float32 numpy arrays sorted by name.

    With ``expected`` (a manifest) the names, shapes and dtype must match it exactly. ``require_finite``
    rejects NaN and infinite values. Errors are :class:`UpdateFormatError` naming the offending tensor.
    """
    from safetensors.numpy import load

    try:
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        arrays = load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError / ValueError / JSON errors
        raise UpdateFormatError(f"Not a valid safetensors payload ({len(data)} bytes): {exc}") from exc
    problems = []
    for name, info in header.items():
        if name != "__metadata__" and info.get("dtype") != DTYPE:
            problems.append(f"{name} has dtype {info.get('dtype')}, only {DTYPE} is accepted")
    state = {name: arrays[name] for name in sorted(arrays)}
    if expected is not None:
        problems.extend(check_manifest(state, expected))
    if require_finite:
        problems.extend(f"{name} holds NaN or infinite values" for name, a in state.items() if not np.isfinite(a).all())
    if problems:
        raise UpdateFormatError(
            "Invalid update: "
            + "; ".join(problems[:10])
            + ("" if len(problems) <= 10 else f"; and {len(problems) - 10} more")
        )
    return state


def manifest(state: Mapping[str, Any]) -> Manifest:
    """``{name: [shape as a list, "F32"]}``, sorted by name, for any state (torch, numpy or a manifest)."""
    out: Manifest = {}
    for name in sorted(state):
        shape = getattr(state[name], "shape", None)
        if shape is None:
            raise UpdateFormatError(f"{name} has no shape; manifest() needs tensors or arrays.")
        out[name] = [[int(d) for d in shape], DTYPE]
    return out


def check_manifest(state: Mapping[str, Any], expected: Manifest) -> list[str]:
    """Problems (empty when none) of a state against a manifest: missing/unexpected names, wrong shapes."""
    problems = []
    got = manifest(state)
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    if missing:
        problems.append(f"missing {len(missing)} tensors, e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensors, e.g. {unexpected[:3]}")
    for name in sorted(set(got) & set(expected)):
        want_shape, want_dtype = expected[name]
        if list(want_shape) != got[name][0]:
            problems.append(f"{name} has shape {got[name][0]}, expected {list(want_shape)}")
        if want_dtype != DTYPE:
            problems.append(f"manifest asks {name} in {want_dtype}; only {DTYPE} is supported")
    return problems


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of serialised bytes (the update commitment)."""
    return hashlib.sha256(data).hexdigest()


def num_parameters(manifest_or_state: Mapping[str, Any]) -> int:
    """Total number of scalars in a manifest or state."""
    total = 0
    for value in manifest_or_state.values():
        shape = value[0] if isinstance(value, list) else value.shape
        total += math.prod(int(d) for d in shape)
    return total

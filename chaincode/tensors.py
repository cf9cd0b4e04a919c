"""Reading update and model bytes (safetensors) inside the contract.

The contract never trusts what a client says about its bytes: it parses them itself, and the
SHA-256 it records is computed here.
"""

from __future__ import annotations

import hashlib

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors

from .context import LedgerContext
from .errors import InvalidArgument, RuleViolation

SUPPORTED_DTYPES = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}

Manifest = dict[str, list]  # name -> [shape, dtype]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def transient_bytes(ctx: LedgerContext, key: str, *, max_bytes: int | None = None) -> bytes:
    data = ctx.get_transient().get(key)
    if not data:
        raise InvalidArgument(
            f"no {key!r} in the transient data: send the bytes as transient field {key!r}, never as an argument"
        )
    if max_bytes is not None and len(data) > max_bytes:
        raise RuleViolation(f"{key} is {len(data)} bytes; the consortium rules allow at most {max_bytes}")
    return data


def parse(data: bytes, what: str) -> dict[str, np.ndarray]:
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise InvalidArgument(f"{what} is not a valid safetensors file: {exc}") from None
    if not tensors:
        raise InvalidArgument(f"{what} contains no tensors")
    for name, array in tensors.items():
        if array.dtype not in SUPPORTED_DTYPES:
            raise InvalidArgument(f"{what} tensor {name!r} has dtype {array.dtype}; use float16/32/64")
    return tensors


def manifest(tensors: dict[str, np.ndarray]) -> Manifest:
    return {name: [list(a.shape), SUPPORTED_DTYPES[a.dtype]] for name, a in sorted(tensors.items())}


def check_finite(tensors: dict[str, np.ndarray], what: str) -> None:
    for name in sorted(tensors):
        if not np.isfinite(tensors[name]).all():
            raise InvalidArgument(f"{what} tensor {name!r} contains NaN or Inf values")


def check_shapes(tensors: dict[str, np.ndarray], expected: Manifest, what: str) -> None:
    names, want = set(tensors), set(expected)
    if names != want:
        missing, extra = sorted(want - names), sorted(names - want)
        raise InvalidArgument(
            f"{what} does not match the base model's tensors (missing: {missing[:5]}, unexpected: {extra[:5]})"
        )
    for name in sorted(names):
        shape = list(tensors[name].shape)
        if shape != expected[name][0]:
            raise InvalidArgument(f"{what} tensor {name!r} has shape {shape}; the base model has {expected[name][0]}")

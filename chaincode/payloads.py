"""Tensor payloads inside the contract: transient bytes, decoded and checked with the shared codec.

The contract never trusts what a client says about its bytes: it reads them from the transient data itself,
decodes them with :mod:`fedledger.tensors`, and records the SHA-256 it computes. Codec refusals become
:class:`InvalidArgument` so that the caller sees the contract's typed error.
"""

from __future__ import annotations

import numpy as np

from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.errors import InvalidArgument, RuleViolation
from fedledger.tensors import Manifest, TensorFormatError, decode


def transient_bytes(ctx: LedgerContext, key: str, *, max_bytes: int | None = None) -> bytes:
    """The bytes of transient field ``key``, refused when absent or over ``max_bytes``."""
    data = ctx.get_transient().get(key)
    if not data:
        raise InvalidArgument(
            f"no {key!r} in the transient data: send the bytes as transient field {key!r}, never as an argument"
        )
    if max_bytes is not None and len(data) > max_bytes:
        raise RuleViolation(f"{key} is {len(data)} bytes; the consortium rules allow at most {max_bytes}")
    return data


def decode_payload(data: bytes, what: str, *, expected: Manifest | None = None) -> dict[str, np.ndarray]:
    """Finite tensors of ``data``, matching ``expected`` (names, shapes and dtype) when given."""
    try:
        return decode(data, expected=expected, what=what)
    except TensorFormatError as exc:
        raise InvalidArgument(str(exc)) from None

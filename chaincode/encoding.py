"""Deterministic JSON and argument parsing shared by every transaction.

Every endorsing peer must write byte-identical values, so all records are encoded with sorted
keys and no whitespace; every argument arrives as a string and is parsed here with a message
that names the argument.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from fedledger.chaincode.errors import InvalidArgument


def _default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """Canonical JSON: sorted keys, compact, UTF-8, NaN refused."""
    if value is None:
        return b""
    return json.dumps(value, default=_default, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def loads(data: bytes) -> Any:
    return json.loads(data.decode())


def parse_int(name: str, text: str, *, minimum: int | None = None) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be an integer, got {text!r}") from None
    if minimum is not None and value < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {value}")
    return value


def parse_float(name: str, text: str, *, minimum: float | None = None) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise InvalidArgument(f"{name} must be finite, got {text!r}")
    if minimum is not None and value < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {value}")
    return value


def parse_json(name: str, text: str, expected: type | tuple[type, ...]) -> Any:
    def refuse_constant(constant: str) -> None:
        raise ValueError(f"{constant} is not allowed")

    try:
        value = json.loads(text, parse_constant=refuse_constant)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{name} must be JSON: {exc}") from None
    if not isinstance(value, expected):
        kind = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        raise InvalidArgument(f"{name} must be a JSON {kind}, got {type(value).__name__}")
    return value


def parse_choice(name: str, text: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise InvalidArgument(f"{name} must be one of {', '.join(choices)}; got {text!r}")
    return text


def parse_hash(name: str, text: str) -> str:
    value = text.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidArgument(f"{name} must be a hex SHA-256 (64 characters), got {text!r}")
    return value

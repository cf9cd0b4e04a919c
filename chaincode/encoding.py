"""Deterministic JSON and argument parsing shared by every transaction.

Every endorsing peer must write byte-identical values, so all records are encoded with sorted
keys and no whitespace; every argument arrives as a string and is parsed here with a message
that names the argument.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
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


#: Longest JSON argument any transaction takes (rules, metrics, update hash lists).
MAX_JSON_BYTES = 1 << 20


def decode_arguments(raw: Sequence[bytes | str]) -> list[str]:
    """Transaction arguments as text: each must be UTF-8 (the adapters hand the contract the bytes they got)."""
    out = []
    for position, value in enumerate(raw, start=1):
        if isinstance(value, str):
            out.append(value)
            continue
        try:
            out.append(bytes(value).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidArgument(
                f"argument {position} is not UTF-8 text (byte {exc.start}); send binary data as transient data"
            ) from None
    return out


def parse_text(name: str, text: str, *, max_bytes: int, required: bool = True) -> str:
    """Free text (a reason, a name), stripped; refused when empty (if ``required``) or over ``max_bytes``."""
    value = text.strip()
    if required and not value:
        raise InvalidArgument(f"{name} is required")
    size = len(value.encode())
    if size > max_bytes:
        raise InvalidArgument(f"{name} is {size} bytes; the consortium rules allow at most {max_bytes}")
    return value


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

    if len(text) > MAX_JSON_BYTES:
        raise InvalidArgument(f"{name} is {len(text)} characters of JSON; at most {MAX_JSON_BYTES} are accepted")
    try:
        value = json.loads(text, parse_constant=refuse_constant)
    except RecursionError:
        raise InvalidArgument(f"{name} is JSON nested too deeply") from None
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

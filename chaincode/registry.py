"""Registers contract transactions and dispatches string arguments to them.

Each transaction is a plain function ``fn(ctx, *args: str) -> record``; the decorator records
its Fabric-style name and whether it writes (submit) or only reads (evaluate).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from fedledger.chaincode.errors import InvalidArgument

TransactionFn = Callable[..., object]


@dataclass(frozen=True)
class TransactionInfo:
    name: str
    fn: TransactionFn
    submit: bool
    parameters: tuple[str, ...]
    required: int


TRANSACTIONS: dict[str, TransactionInfo] = {}


def describe(name: str, fn: TransactionFn, *, submit: bool = True) -> TransactionInfo:
    """The TransactionInfo of ``fn(ctx, *args)`` under ``name``, without registering it."""
    params = list(inspect.signature(fn).parameters.values())[1:]  # drop ctx
    required = sum(1 for p in params if p.default is inspect.Parameter.empty)
    return TransactionInfo(name, fn, submit, tuple(p.name for p in params), required)


def transaction(name: str, *, submit: bool = True) -> Callable[[TransactionFn], TransactionFn]:
    """Declares ``fn`` as the transaction ``name``; ``submit=False`` marks a read-only query."""

    def register(fn: TransactionFn) -> TransactionFn:
        TRANSACTIONS[name] = describe(name, fn, submit=submit)
        return fn

    return register


def bind_arguments(info: TransactionInfo, args: list[str]) -> list[str]:
    if not info.required <= len(args) <= len(info.parameters):
        expected = ", ".join(info.parameters) or "no arguments"
        raise InvalidArgument(f"{info.name} takes {expected}; got {len(args)} argument(s)")
    return args

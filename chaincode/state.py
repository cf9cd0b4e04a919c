"""Typed reads and writes of records over the ledger-context port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import dumps, loads
from fedledger.chaincode.errors import NotFound
from fedledger.chaincode.keys import composite_key
from fedledger.chaincode.records import from_dict

T = TypeVar("T")


def read(ctx: LedgerContext, cls: type[T], object_type: str, attrs: list[str]) -> T | None:
    data = ctx.get_state(composite_key(object_type, attrs))
    return from_dict(cls, loads(data)) if data else None


def require(ctx: LedgerContext, cls: type[T], object_type: str, attrs: list[str], what: str) -> T:
    record = read(ctx, cls, object_type, attrs)
    if record is None:
        raise NotFound(f"{what} does not exist")
    return record


def write(ctx: LedgerContext, object_type: str, attrs: list[str], record: object) -> None:
    ctx.put_state(composite_key(object_type, attrs), dumps(record))


def scan(ctx: LedgerContext, cls: type[T], object_type: str, attrs: list[str]) -> Iterator[T]:
    for _key, value in ctx.get_state_by_partial_composite_key(object_type, attrs):
        yield from_dict(cls, loads(value))

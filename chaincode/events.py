"""Chaincode events: one per transaction (Fabric keeps only the last one set)."""

from __future__ import annotations

from typing import Any

from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import dumps


def emit(ctx: LedgerContext, name: str, payload: dict[str, Any]) -> None:
    ctx.set_event(name, dumps(payload))

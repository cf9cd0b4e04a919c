"""FedLedgerContract: the single entry point the ledger adapters call.

It knows nothing about Fabric: an adapter builds a LedgerContext for the transaction and calls
``invoke``. The transactions themselves live in one module per domain (consortium, governance, participants,
lineage, rounds, updates, finalize, aggregate, disputes, queries); importing them registers them.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedledger.chaincode.clock import check_certificate_time, check_clock
from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import decode_arguments, dumps
from fedledger.chaincode.errors import ContractError, NotFound
from fedledger.chaincode.names import CONTRACT_NAME, DEFAULT_CHANNEL
from fedledger.chaincode.registry import TRANSACTIONS, TransactionInfo, bind_arguments

# Importing registers each domain's transactions.
from fedledger.chaincode.transactions import (  # noqa: F401
    aggregate,
    consortium,
    disputes,
    finalize,
    governance,
    lineage,
    participants,
    queries,
    rounds,
    shared_aggregate,
    shares,
    updates,
)


class FedLedgerContract:
    """Dispatches a transaction by name; every failure is a ContractError and writes nothing."""

    name = CONTRACT_NAME

    def invoke(self, ctx: LedgerContext, function: str, args: Sequence[bytes | str]) -> bytes:
        """Runs ``function`` with ``args`` as the adapter received them (bytes are decoded here, as UTF-8)."""
        info = self.transaction(function)
        if info.submit:
            check_clock(ctx)
        check_certificate_time(ctx)
        result = info.fn(ctx, *bind_arguments(info, decode_arguments(args)))
        return dumps(result)

    def transaction(self, function: str) -> TransactionInfo:
        try:
            return TRANSACTIONS[function]
        except KeyError:
            raise NotFound(
                f"transaction {function!r} does not exist; known: {', '.join(sorted(TRANSACTIONS))}"
            ) from None

    def evaluate_transactions(self) -> list[str]:
        return sorted(name for name, info in TRANSACTIONS.items() if not info.submit)

    def submit_transactions(self) -> list[str]:
        return sorted(name for name, info in TRANSACTIONS.items() if info.submit)


__all__ = ["CONTRACT_NAME", "DEFAULT_CHANNEL", "ContractError", "FedLedgerContract"]

"""Errors raised by the SDK, by step, as in fabric-gateway.

``EndorseError``/``SubmitError``/``CommitStatusError`` say which step failed and carry the
transaction id and the detail from the ledger. A transaction that was ordered but committed
invalid raises ``CommitError`` with Fabric's validation code. When the contract itself refused
the transaction, the EndorseError is also an instance of the contract's own error class
(``fedledger.chaincode.errors.NotFound``...), so callers can catch either.
"""

from __future__ import annotations

from fedledger.chaincode import errors as contract_errors

__all__ = [
    "CommitError",
    "CommitStatusError",
    "ContractRejected",
    "EndorseError",
    "GatewayError",
    "SubmitError",
    "contract_rejection",
]


class GatewayError(Exception):
    """A step of a transaction failed; ``details`` lists what each remote party said."""

    step = "gateway call"
    """The step, in words, for messages."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "UNKNOWN",
        transaction_id: str = "",
        details: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.transaction_id = transaction_id
        self.details = details

    def __str__(self) -> str:
        text = super().__str__()
        if self.transaction_id:
            text += f" (transaction {self.transaction_id})"
        for detail in self.details:
            text += f"\n  - {detail}"
        return text


class EndorseError(GatewayError):
    """The proposal was not endorsed: the contract refused it, or no endorser answered."""

    step = "endorsement"


class SubmitError(GatewayError):
    """The endorsed transaction could not be handed to ordering."""

    step = "submission to ordering"


class CommitStatusError(GatewayError):
    """The commit status could not be obtained (the transaction may still commit)."""

    step = "commit status"


class CommitError(Exception):
    """The transaction was ordered but committed invalid (e.g. MVCC_READ_CONFLICT)."""

    def __init__(self, message: str, *, code: str, transaction_id: str) -> None:
        super().__init__(f"{message} (transaction {transaction_id}: {code})")
        self.code = code
        self.transaction_id = transaction_id


class ContractRejected(EndorseError):
    """The contract refused the transaction; ``contract_message`` is its own words."""

    contract_message: str = ""


_REJECTION_CLASSES: dict[str, type[ContractRejected]] = {}


def _rejection_class(base: type[contract_errors.ContractError]) -> type[ContractRejected]:
    if base.code not in _REJECTION_CLASSES:
        _REJECTION_CLASSES[base.code] = type(base.__name__, (ContractRejected, base), {})
    return _REJECTION_CLASSES[base.code]


def contract_rejection(
    message: str, *, transaction_id: str = "", details: tuple[str, ...] = ()
) -> ContractRejected | None:
    """Turns a peer or ledger message carrying a ``[CODE]`` contract error into a typed error."""
    parsed = contract_errors.parse_error_message(message)
    if parsed is None:
        return None
    cls = _rejection_class(type(parsed))
    error = cls.__new__(cls)
    GatewayError.__init__(error, str(parsed), code=parsed.code, transaction_id=transaction_id, details=details)
    error.message = parsed.message  # pyright: ignore[reportAttributeAccessIssue]  # the ContractError base's field
    error.contract_message = parsed.message
    return error

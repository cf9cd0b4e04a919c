"""Contract errors. Each carries a stable code so that clients can map it to a typed exception.

On Fabric the error travels only as the endorsement message string, so the code is encoded
as a ``[CODE]`` prefix of the message; :func:`parse_error_message` reverses that.
"""

from __future__ import annotations

import re


class ContractError(Exception):
    """A transaction was rejected by the contract. Nothing it attempted was written."""

    code = "CONTRACT_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class InvalidArgument(ContractError):
    code = "INVALID_ARGUMENT"


class NotFound(ContractError):
    code = "NOT_FOUND"


class AlreadyExists(ContractError):
    code = "ALREADY_EXISTS"


class PermissionDenied(ContractError):
    code = "PERMISSION_DENIED"


class KeyEndorsementFailure(PermissionDenied):
    """A transaction writes a key whose endorsers (state-based endorsement) do not include its endorsing
    organisation; Fabric invalidates it at commit with the validation code of the same name."""

    code = "ENDORSEMENT_POLICY_FAILURE"


class FailedPrecondition(ContractError):
    """The request is well-formed but the ledger's state does not allow it now."""

    code = "FAILED_PRECONDITION"


class RuleViolation(ContractError):
    """The request breaks a consortium participation rule (budget, bounds, size...)."""

    code = "RULE_VIOLATION"


class ClockSkew(ContractError):
    """The proposal's timestamp is further from the endorser's own clock than the rules allow."""

    code = "CLOCK_SKEW"


ERROR_CLASSES: dict[str, type[ContractError]] = {
    cls.code: cls
    for cls in (
        ContractError,
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        KeyEndorsementFailure,
        FailedPrecondition,
        RuleViolation,
        ClockSkew,
    )
}

_PREFIX = re.compile(r"\[([A-Z_]+)\] (.*)", re.S)


def parse_error_message(text: str) -> ContractError | None:
    """Rebuilds the typed error from a message that went through a peer, if it carries a code."""
    match = _PREFIX.search(text)
    if not match or match.group(1) not in ERROR_CLASSES:
        return None
    return ERROR_CLASSES[match.group(1)](match.group(2).strip())

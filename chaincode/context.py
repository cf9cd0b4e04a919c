"""The ledger-context port: everything the contract may ask of a ledger.

The contract's business logic only talks to this interface. Two adapters implement it:
``fedledger.chaincode.embedded`` (SQLite, in-process) and ``fedledger.chaincode.fabric``
(fabric-chaincode-python stub). Neither gRPC, protobuf nor Fabric types cross this line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Creator:
    """The identity that signed the transaction proposal."""

    mspid: str
    cert_pem: bytes


@dataclass(frozen=True)
class HistoryEntry:
    """One committed modification of a key, oldest first."""

    tx_id: str
    timestamp: float
    value: bytes
    is_delete: bool


@runtime_checkable
class LedgerContext(Protocol):
    """Per-transaction view of the ledger, mirroring Fabric's ChaincodeStub semantics.

    Writes are buffered by the adapter and reach the ledger only if the transaction
    succeeds; reads never see the transaction's own writes (as in Fabric).
    """

    def get_state(self, key: str) -> bytes | None: ...

    def put_state(self, key: str, value: bytes) -> None: ...

    def del_state(self, key: str) -> None: ...

    def get_state_by_partial_composite_key(
        self, object_type: str, attributes: list[str]
    ) -> Iterator[tuple[str, bytes]]:
        """Yields (key, value) for every composite key with this prefix, in key order."""
        ...

    def get_history_for_key(self, key: str) -> Iterator[HistoryEntry]: ...

    def get_creator(self) -> Creator: ...

    def get_tx_id(self) -> str: ...

    def get_tx_timestamp(self) -> float:
        """Seconds since the epoch: the only clock the contract may use. Fabric: the signed proposal's timestamp,
        which the contract accepts only within ``clock_skew`` bounds; embedded: the ledger's own clock."""
        ...

    def clock_skew(self) -> float:
        """Seconds the proposal's timestamp lies ahead of (+) or behind (-) this endorser's own clock.

        Only for refusing a proposal whose time was moved; never written, never part of a decision that
        changes the read/write set.
        """
        ...

    def get_transient(self) -> Mapping[str, bytes]: ...

    def set_event(self, name: str, payload: bytes) -> None:
        """Fabric keeps one event per transaction: a second call replaces the first."""
        ...

    def set_key_endorsers(self, key: str, mspids: Sequence[str]) -> None:
        """State-based endorsement: from this transaction's commit on, a transaction that writes or deletes ``key``
        is valid only if endorsed by a peer of one of ``mspids`` (one suffices), instead of the chaincode policy.

        So that one organisation alone may later update a key that holds its own data (its share of an update),
        while the key's creation still needs the chaincode policy. Call it in the transaction that writes the key's
        value, or later: endorsers of a key that does not exist after this transaction are ignored (as in Fabric),
        and deleting the key drops them. An empty ``mspids`` removes them (the chaincode policy applies again).
        The change itself is a write of ``key``: it must satisfy the key's current endorsers.
        """
        ...

    def get_key_endorsers(self, key: str) -> list[str] | None:
        """The key's endorsers as committed (sorted MSP IDs), or None when it has none and the chaincode policy
        applies; so that a transaction can check who may update the key before it relies on that."""
        ...


def normalize_endorsers(key: str, mspids: Sequence[str]) -> list[str]:
    """``set_key_endorsers``'s arguments checked, in the form both adapters store: sorted, without duplicates."""
    if not key:
        raise ValueError("key must not be empty")
    if isinstance(mspids, str) or not all(isinstance(m, str) and m for m in mspids):
        raise ValueError(f"endorsers of {key!r} must be a list of MSP IDs, got {mspids!r}")
    return sorted(set(mspids))

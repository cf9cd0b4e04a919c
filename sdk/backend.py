"""The backend port of the SDK: what a ledger must offer the client surface.

``Gateway``/``Network``/``Contract`` (gateway.py) are the only public surface; they delegate
to one Backend. Two adapters exist: the embedded ledger (embedded.py) and the Fabric Gateway
protocol (fabric/). A backend is built for one signing identity.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Proposal:
    """A transaction invocation before it is signed by the backend's protocol."""

    channel: str
    chaincode: str
    function: str
    arguments: Sequence[bytes]
    transient: Mapping[str, bytes] = field(default_factory=dict)
    endorsing_orgs: Sequence[str] = ()


@dataclass(frozen=True)
class SubmitResult:
    """A transaction committed VALID."""

    transaction_id: str
    block_number: int
    result: bytes


@dataclass(frozen=True)
class ChaincodeEvent:
    """One chaincode event from a committed VALID transaction."""

    block_number: int
    transaction_id: str
    chaincode: str
    name: str
    payload: bytes


class Backend(Protocol):
    def evaluate(self, proposal: Proposal) -> bytes:
        """Runs a query on one endorser; nothing is ordered or committed."""
        ...

    def submit(self, proposal: Proposal) -> SubmitResult:
        """Endorses, orders and waits for commit; raises a GatewayError subclass on failure."""
        ...

    def chaincode_events(
        self, channel: str, chaincode: str, *, start_block: int | None = None
    ) -> Iterator[ChaincodeEvent]:
        """Yields events in commit order, from ``start_block`` (None: only new ones), until closed."""
        ...

    def close(self) -> None: ...

"""One way to connect: a ready :class:`FedLedgerClient` for a run's ledger, on either ledger, given an identity.

A :class:`LedgerLocation` says where a run's ledger is: an embedded consortium folder, or a Fabric network
folder (``network.json``, from ``make network-up``), with the channel and chaincode. :func:`open_client`
connects an identity to it; :meth:`LedgerLocation.identity` issues (on first use) or loads the identity of a
named member from that ledger's own certificate authorities, for demos, tests and benchmarks. A real
consortium enrols its members with its own CA and passes their MSP folders instead
(:func:`fedledger.identity.load_msp_identity`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fedledger.chaincode.names import CONTRACT_NAME, DEFAULT_CHANNEL
from fedledger.identity import Identity, Signer
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.gateway import connect

__all__ = ["LedgerLocation", "open_client", "relative_path"]

Clock = Callable[[], float]


@dataclass(frozen=True)
class LedgerLocation:
    """Where a ledger is: ``kind`` "embedded" (``path`` = the consortium folder) or "fabric" (``path`` = the
    network folder). ``issued`` is where Fabric identities issued by :meth:`identity` are kept (default
    ``<network>/demo/identities``)."""

    kind: Literal["embedded", "fabric"]
    path: Path
    channel: str = DEFAULT_CHANNEL
    chaincode: str = CONTRACT_NAME
    issued: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("embedded", "fabric"):
            raise ValueError(f"ledger kind must be 'embedded' or 'fabric', got {self.kind!r}")
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, base: Path | None = None) -> LedgerLocation:
        """From a run's recorded ``{"kind", "path", "channel", "chaincode"}``; a relative path is taken
        relative to ``base`` (the run folder)."""
        path = Path(record["path"])
        if base is not None and not path.is_absolute():
            path = base / path
        return cls(
            record["kind"],
            path,
            channel=record.get("channel", DEFAULT_CHANNEL),
            chaincode=record.get("chaincode", CONTRACT_NAME),
        )

    def record(self, *, relative_to: Path | None = None) -> dict[str, Any]:
        """What a run folder records of this location (``path`` relative to the run folder ``relative_to``)."""
        path = str(self.path) if relative_to is None else relative_path(self.path, relative_to)
        return {"kind": self.kind, "path": path, "channel": self.channel, "chaincode": self.chaincode}

    def identity(self, mspid: str, name: str, *, admin: bool = False) -> tuple[Identity, Signer]:
        """The identity ``name`` of organisation ``mspid``, issued by that organisation's CA on first use."""
        if self.kind == "embedded":
            from fedledger.chaincode.embedded.bootstrap import open_consortium

            return open_consortium(self.path).user(mspid, name, admin=admin)
        from fedledger.sdk.fabric.local import LocalFabricNetwork

        return LocalFabricNetwork(self.path, self.issued or self.path / "demo" / "identities").identity(
            mspid, name, admin=admin
        )

    def client(
        self, mspid: str, name: str, *, admin: bool = False, clock: Clock | None = None, **options: Any
    ) -> FedLedgerClient:
        """:func:`open_client` for :meth:`identity`."""
        return open_client(self, *self.identity(mspid, name, admin=admin), clock=clock, **options)


def relative_path(target: Path | str, run: Path | str) -> str:
    """``target`` as a run folder records it: relative to the run folder ``run`` (with ``..`` when outside it),
    so that a run moved or copied whole is read where it is now, never where it was made."""
    return os.path.relpath(Path(target).resolve(), Path(run).resolve())


def open_client(
    location: LedgerLocation, identity: Identity, signer: Signer, *, clock: Clock | None = None, **options: Any
) -> FedLedgerClient:
    """A client of ``location``'s contract signing as ``identity``.

    On Fabric it talks to the gateway peer of the identity's own organisation (the other organisations' peers
    take over when it cannot be reached), and by default every submit
    returns only once each organisation's peer has the block (``committed_on``), so the next transaction
    (endorsed by several organisations) never reads a state one of them has not caught up with. ``options``
    go to the Fabric gateway backend (``committed_on``, ``endorse_timeout``, ...); the embedded ledger takes
    none. ``clock`` stamps proposals (tests).
    """
    if location.kind == "embedded":
        if options:
            raise ValueError(f"options {sorted(options)} apply to a Fabric ledger only, not to an embedded one")
        ledger = location.path / "ledger" if (location.path / "ledger").is_dir() else location.path
        gateway = connect(identity, signer=signer, ledger_dir=ledger, clock=clock)
    else:
        from fedledger.sdk.fabric.profile import load_network_dir

        profile = load_network_dir(location.path)
        options.setdefault("committed_on", [o.mspid for o in profile.orgs.values()])
        backend = profile.backend(identity.mspid, identity, signer, clock=clock, **options)
        gateway = connect(identity, signer=signer, backend=backend)
    network = gateway.get_network(location.channel)
    return FedLedgerClient(network.get_contract(location.chaincode), network)

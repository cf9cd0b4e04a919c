"""Members of a network brought up here with ``make network-up``: connect any (MSP, user) to its org's
peer, issuing new client identities from that org's cryptogen CA on first use.

A demo and test convenience: a real consortium enrols its members with its own Fabric CA and
connects them with ``connect(identity, signer=..., endpoint=..., tls_root_cert=...)``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from fedledger.chaincode.embedded.msp import Organization, add_user
from fedledger.identity import Identity, Signer, load_msp_identity
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.connection import LedgerLocation, open_client
from fedledger.sdk.fabric.profile import NetworkProfile, load_network_dir


class LocalFabricNetwork:
    def __init__(
        self, network_dir: Path | str, issued: Path | str, *, clock: Callable[[], float] | None = None
    ) -> None:
        self.network_dir = Path(network_dir)
        if not (self.network_dir / "network.json").exists():
            raise FileNotFoundError(f"no network in {self.network_dir}: run `make network-up` first")
        self.profile: NetworkProfile = load_network_dir(self.network_dir)
        self._issued = Path(issued)
        self._clock = clock
        self.chaincode: str | None = None  # another chaincode name than the profile's (tests use fresh ones)

    def issuer(self, mspid: str) -> Organization:
        """The org's cryptogen CA, copied into ``issued``: it issues there, the network's folder stays untouched."""
        org = self.profile.org(mspid)
        org_dir = org.msp_dir("Admin").parents[2]  # .../peerOrganizations/org1.example.com
        issuer = Organization(org.mspid, org_dir.name, self._issued / org_dir.name)
        if not issuer.ca_cert_path.exists():
            shutil.copytree(org_dir / "ca", issuer.path / "ca")
        return issuer

    def identity(self, mspid: str, name: str, *, admin: bool = False) -> tuple[Identity, Signer]:
        """cryptogen's Admin@ for ("Admin", admin=True); any other user issued on first use."""
        org = self.profile.org(mspid)
        if admin and name == "Admin":
            return load_msp_identity(org.msp_dir("Admin"), org.mspid)
        return load_msp_identity(add_user(self.issuer(org.mspid), name, ou="admin" if admin else "client"), org.mspid)

    @property
    def location(self) -> LedgerLocation:
        return LedgerLocation(
            "fabric",
            self.network_dir,
            channel=self.profile.channel,
            chaincode=self.chaincode or self.profile.chaincode,
            issued=self._issued,
        )

    def client(self, mspid: str, name: str, admin: bool = False) -> FedLedgerClient:
        return open_client(self.location, *self.identity(mspid, name, admin=admin), clock=self._clock)

"""Sets up an embedded consortium in one folder: MSP material for each organisation and the
orderer, and a ledger whose genesis block trusts those organisations' CAs.

    <base>/organizations/peerOrganizations/<domain>/users/<user>@<domain>/msp
    <base>/organizations/ordererOrganizations/example.com/users/orderer@example.com/msp
    <base>/ledger/ledger.sqlite
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedledger.chaincode.embedded.ledger import EmbeddedLedger
from fedledger.chaincode.embedded.msp import Organization, add_user, create_organization
from fedledger.chaincode.names import DEFAULT_CHANNEL
from fedledger.identity import Identity, Signer, load_msp_identity

DEFAULT_ORGANIZATIONS = {"Org1MSP": "org1.example.com", "Org2MSP": "org2.example.com"}


@dataclass(frozen=True)
class EmbeddedConsortium:
    base: Path
    organizations: dict[str, Organization]

    @property
    def ledger_dir(self) -> Path:
        return self.base / "ledger"

    def user(self, mspid: str, name: str, *, admin: bool = False) -> tuple[Identity, Signer]:
        """The identity ``name@domain`` of ``mspid``, issued on first use (OU=admin or OU=client)."""
        org = self.organizations.get(mspid)
        if org is None:
            raise KeyError(f"unknown organisation {mspid}; known: {', '.join(sorted(self.organizations))}")
        msp = add_user(org, name, ou="admin" if admin else "client")
        return load_msp_identity(msp, mspid)

    def admin(self, mspid: str) -> tuple[Identity, Signer]:
        return self.user(mspid, "Admin", admin=True)


def _peer_orgs(base: Path) -> Path:
    return base / "organizations" / "peerOrganizations"


def create_consortium(
    base: Path | str, organizations: dict[str, str] | None = None, *, channel: str = DEFAULT_CHANNEL
) -> EmbeddedConsortium:
    """Creates MSP material and the ledger; refuses a folder that already holds a ledger."""
    base = Path(base)
    organizations = organizations or DEFAULT_ORGANIZATIONS
    orgs = {mspid: create_organization(_peer_orgs(base), mspid, domain) for mspid, domain in organizations.items()}
    orderer_org = create_organization(base / "organizations" / "ordererOrganizations", "OrdererMSP", "example.com")
    orderer_msp = add_user(orderer_org, "orderer", ou="orderer")
    for org in orgs.values():
        add_user(org, "Admin", ou="admin")
    EmbeddedLedger.create(
        base / "ledger",
        channel=channel,
        organizations={mspid: org.ca_cert_path.read_bytes() for mspid, org in orgs.items()},
        orderer_msp=orderer_msp,
    ).close()
    (base / "organizations" / "index.txt").write_text(
        "".join(f"{mspid} {org.domain}\n" for mspid, org in sorted(orgs.items()))
    )
    return EmbeddedConsortium(base, orgs)


def open_consortium(base: Path | str) -> EmbeddedConsortium:
    base = Path(base)
    index = base / "organizations" / "index.txt"
    if not index.exists():
        raise FileNotFoundError(f"no embedded consortium in {base}; create it with `fedledger ledger init {base}`")
    orgs = {}
    for line in index.read_text().splitlines():
        mspid, domain = line.split()
        orgs[mspid] = Organization(mspid, domain, _peer_orgs(base) / domain)
    return EmbeddedConsortium(base, orgs)

"""Admits an organisation that joined the channel into the contract's consortium (``make add-org``'s last step).

    python network/admit.py RUN_DIR MSPID [CHAINCODE]

Joining the channel makes an organisation's peers endorse and count in the MAJORITY policy, but the contract
only lets members of its rules' ``member_msps`` enrol trainers, vote and submit. The rules change is proposed
by the admin of an ``admin_msps`` organisation and approved by the other members' admins until the rules'
governance quorum applies it, exactly as members would do it by hand; this local network holds every admin's
key, as it did for the channel config update. Nothing to do when the consortium is not initialised yet (its
founder lists the organisations) or already counts the organisation.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from fedledger.chaincode.errors import FailedPrecondition
from fedledger.sdk.client import with_quorum
from fedledger.sdk.fabric.local import LocalFabricNetwork

__all__ = ["admit_member", "main"]

LOG = logging.getLogger("fedledger.network")


def admit_member(run: Path, mspid: str, *, chaincode: str | None = None) -> str:
    """Adds ``mspid`` to the consortium rules' ``member_msps`` on ``chaincode`` (default: the network's); what
    was done, in words."""
    network = LocalFabricNetwork(run, run / "demo" / "identities")
    network.chaincode = chaincode
    founder = next(org.mspid for org in network.profile.orgs.values() if org.mspid != mspid)
    observer = network.client(founder, "Admin", admin=True)
    try:
        rules = observer.rules()
    except FailedPrecondition:  # GetRules' answer before InitConsortium
        return f"consortium not initialised on {network.location.chaincode}: its founder lists the member organisations"
    if mspid in rules.member_msps:
        return f"{mspid} is already a member of the consortium on {network.location.chaincode}"
    proposer = next((m for m in rules.admin_msps if m in rules.member_msps), rules.member_msps[0])
    voters = [proposer, *(m for m in rules.member_msps if m != proposer)]
    admins = [network.client(m, "Admin", admin=True) for m in voters]
    proposal = with_quorum(admins, lambda admin: admin.propose_rules({"member_msps": [*rules.member_msps, mspid]}))
    approvals = ", ".join(proposal.approvals)
    return f"{mspid} admitted to the consortium on {network.location.chaincode} (approved by {approvals})"


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    LOG.info("%s", admit_member(Path(argv[0]), argv[1], chaincode=argv[2] if len(argv) == 3 else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Round time on Fabric, shared vs plaintext: :mod:`.round`'s whole round on the native Fabric network, with the
parties acting as a deployment's do.

The network (two organisations, one peer each, three Raft orderers, MAJORITY endorsement; the contract's
per-organisation state-based endorsement for each organisation's share transactions) is one the caller brought
up (``network/network-up.sh``, or ``make network-up``). Every round runs on a fresh chaincode namespace of it
(:class:`~fedledger.sdk.fabric.namespaces.Namespaces`: a new definition of the installed package, so an empty
ledger on the same peers and chaincode servers). The N members submit at the same time, each on a thread with
its own identity and gateway connection; the two organisations' share holders act at the same time, each on a
thread as its organisation's admin. Every client's submit returns once both organisations' peers committed the
block (the next transaction, endorsed by both, reads the write). The setup (namespace, enrolment, genesis) is not
timed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fedledger.bench.ledgers import configured_batch_timeout
from fedledger.bench.shares.round import ORGS, RoundSample, round_on, run_round_part
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.connection import open_client
from fedledger.sdk.fabric.local import LocalFabricNetwork
from fedledger.sdk.fabric.namespaces import CHANNEL, PACKAGE_OF, Namespaces
from fedledger.sdk.store import UpdateStore, create_key
from fedledger.tensors import NDState

logger = logging.getLogger("bench.shares")


class FabricRounds:
    """Plays rounds on fresh namespaces of the network in ``network_dir`` (identities issued into ``issued``)."""

    def __init__(self, network_dir: Path, issued: Path, rules: Mapping[str, Any] | None = None) -> None:
        self.network = LocalFabricNetwork(network_dir, issued)
        self.rules = dict(rules or {})
        profile = self.network.profile
        self.orgs = sorted(o.mspid for o in profile.orgs.values())
        if self.orgs[:2] != list(ORGS):
            raise RuntimeError(f"the network's organisations are {self.orgs}, the round needs {list(ORGS)}")
        packages = {}
        for org in profile.orgs.values():
            short = org.msp_dir("Admin").parents[2].name.split(".")[0]  # org1.example.com -> org1
            packages[org.mspid] = (network_dir / "chaincode" / PACKAGE_OF / short / "package_id").read_text().strip()
        self._admins = {mspid: profile.connect(mspid, user="Admin") for mspid in packages}
        first = self._admins[self.orgs[0]]
        self.namespaces = Namespaces(
            self._admins, packages, lambda number: first.wait_for_block(CHANNEL, number, self.orgs), batch=4
        )
        started = time.monotonic()
        for mspid in self._admins:  # a network just brought up may not know its other organisation's peer yet
            self.namespaces.until_endorsable(mspid, PACKAGE_OF, timeout=120)
        logger.info("network ready for endorsement in %.1f s", time.monotonic() - started)

    @contextmanager
    def _namespace(self) -> Iterator[tuple[str, list[FedLedgerClient]]]:
        """A fresh namespace and the list its clients are kept in (all closed afterwards)."""
        self.network.chaincode = self.namespaces.take()
        clients: list[FedLedgerClient] = []
        try:
            yield self.network.chaincode, clients
        finally:
            for client in clients:
                client.contract.backend.close()

    def play(self, mode: str, updates: Sequence[NDState], sizes: Sequence[int], folder: Path) -> RoundSample:
        """One round of ``mode`` on a fresh namespace, members and organisations in parallel."""
        store = UpdateStore(folder / "store", create_key(folder / "store.key"))
        with self._namespace() as (namespace, clients):

            def connect(org: str, name: str, admin: bool) -> FedLedgerClient:
                identity = self.network.identity(org, name, admin=admin)
                client = open_client(self.network.location, *identity, committed_on=self.orgs)
                clients.append(client)
                return client

            logger.debug("%s round on namespace %s", mode, namespace)
            return round_on(mode, updates, sizes, folder, store, connect, self.rules, parallel=True)

    def close(self) -> None:
        self.namespaces.close()
        for admin in self._admins.values():
            admin.close()


def run_round_fabric_part(
    network_dir: Path,
    *,
    cells: Sequence[tuple[int, int]],
    repeats: int,
    seed: int,
    rules: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`~fedledger.bench.shares.round.run_round_part` of the (d, members) ``cells`` on the Fabric network in
    ``network_dir``."""
    rounds = FabricRounds(network_dir, network_dir / "bench-identities", rules)
    try:
        part = run_round_part(
            dims=(), members=(), cells=cells, repeats=repeats, seed=seed, rules=rules, play=rounds.play
        )
    finally:
        rounds.close()
    return {**part, "ledger": "fabric", "network": network_facts(network_dir)}


def network_facts(network_dir: Path) -> dict[str, Any]:
    """What the page says about the network: organisations, orderers, batch timeout, Fabric version."""
    network = LocalFabricNetwork(network_dir, network_dir / "bench-identities")
    return {
        "organisations": len(network.profile.orgs),
        "batch_timeout": configured_batch_timeout(network_dir),
        "channel": network.profile.channel,
    }

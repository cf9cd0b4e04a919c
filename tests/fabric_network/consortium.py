"""The contract suites' :class:`~tests.support.Consortium` on the native Fabric network.

Each test gets a fresh ledger namespace: a new chaincode definition (``fl_<run>_<n>``) approved by
every org and committed, reusing the package the network already installed for ``fedledger``. Its
package ID is the same, so the peers dial the same chaincode-as-a-service servers: no new process,
and the contract code is the one the servers run. Definitions are deployed in batches (all approvals
in one block, all commits in the next): 8 in ~0.2 s with the 50 ms batch timeout (one alone ~0.15 s;
~0.45 s at 200 ms).

Identities (``fedledger.sdk.fabric.local.LocalFabricNetwork``, as in the Fabric demo): ``Admin`` is cryptogen's
Admin@orgN (OU=admin); any other user is issued on first use (OU=client) by a copy of the org's cryptogen CA,
so the same ``trainer0@org1.example.com`` serves every test of the session. Each client talks to its own org's
peer, stamps its proposals with the consortium's fake clock, and its submit returns once every org's peer has
the block (``EveryPeerCommits``).

"Nothing was committed" is checked through qscc: the transactions of the test's namespace in the
channel's blocks (valid or not), which a refused endorsement never reaches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.peer import proposal_pb2, transaction_pb2

from fedledger.chaincode.embedded.msp import Organization
from fedledger.chaincode.names import DEFAULT_CHANNEL
from fedledger.identity import Identity, Signer
from fedledger.sdk.backend import Proposal, SubmitResult
from fedledger.sdk.fabric import ChaincodeEventStream, FabricGatewayBackend, NetworkProfile
from fedledger.sdk.fabric.local import LocalFabricNetwork
from fedledger.sdk.fabric.namespaces import PACKAGE_OF, Namespaces
from fedledger.sdk.gateway import Gateway, connect

from ..support import Consortium
from .fabric_cli import clock_offset_file

CHANNEL = DEFAULT_CHANNEL


def _evaluate(backend: FabricGatewayBackend, chaincode: str, function: str, *args: bytes, org: str) -> bytes:
    return backend.evaluate(Proposal(CHANNEL, chaincode, function, args, {}, (org,)))


@dataclass(frozen=True)
class LedgerTx:
    block: int
    transaction_id: str
    validation_code: str


class BlockIndex:
    """The channel's transactions by chaincode, read block by block through qscc (incrementally)."""

    def __init__(self, backend: FabricGatewayBackend, org: str) -> None:
        self._backend = backend
        self._org = org
        self._scanned = 0
        self._by_chaincode: dict[str, list[LedgerTx]] = {}
        self._lock = threading.Lock()

    def block(self, number: int) -> bytes:
        return _evaluate(self._backend, "qscc", "GetBlockByNumber", CHANNEL.encode(), b"%d" % number, org=self._org)

    def transactions(self, chaincode: str) -> list[LedgerTx]:
        """Every transaction of ``chaincode`` committed so far, in ledger order, whatever its validity."""
        with self._lock:
            info = ledger_pb2.BlockchainInfo.FromString(
                _evaluate(self._backend, "qscc", "GetChainInfo", CHANNEL.encode(), org=self._org)
            )
            for number in range(self._scanned, info.height):
                self._index(number, common_pb2.Block.FromString(self.block(number)))
            self._scanned = max(self._scanned, info.height)
            return list(self._by_chaincode.get(chaincode, ()))

    def _index(self, number: int, block: common_pb2.Block) -> None:
        codes = block.metadata.metadata[common_pb2.BlockMetadataIndex.TRANSACTIONS_FILTER]
        for position, data in enumerate(block.data.data):
            payload = common_pb2.Payload.FromString(common_pb2.Envelope.FromString(data).payload)
            header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
            if header.type != common_pb2.HeaderType.ENDORSER_TRANSACTION:
                continue
            chaincode = proposal_pb2.ChaincodeHeaderExtension.FromString(header.extension).chaincode_id.name
            code = transaction_pb2.TxValidationCode.Name(codes[position])
            self._by_chaincode.setdefault(chaincode, []).append(LedgerTx(number, header.tx_id, code))


class EveryPeerCommits:
    """A Fabric backend whose ``submit`` returns once every org's peer committed the block, not only the
    gateway's own peer: the next transaction, endorsed by both orgs, and any query then see the write
    (the embedded ledger's read-your-writes). Everything else is the wrapped backend's."""

    def __init__(self, backend: FabricGatewayBackend, wait_for_block: Callable[[int], None]) -> None:
        self.backend = backend
        self._wait_for_block = wait_for_block

    def submit(self, proposal: Proposal) -> SubmitResult:
        result = self.backend.submit(proposal)
        self._wait_for_block(result.block_number)
        return result

    def evaluate(self, proposal: Proposal) -> bytes:
        return self.backend.evaluate(proposal)

    def chaincode_events(
        self, channel: str, chaincode: str, *, start_block: int | None = None, after_transaction_id: str = ""
    ) -> ChaincodeEventStream:
        return self.backend.chaincode_events(
            channel, chaincode, start_block=start_block, after_transaction_id=after_transaction_id
        )

    def close(self) -> None:
        self.backend.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


class FabricTestbed:
    """Session-wide: the network's profile, issued identities, the namespace deployer, the block index."""

    def __init__(self, run_dir: Path, workdir: Path) -> None:
        self.run_dir = run_dir
        self.members = LocalFabricNetwork(run_dir, workdir)
        """Issues the identities (from copies of the orgs' cryptogen CAs) as for the Fabric demo."""
        self.profile: NetworkProfile = self.members.profile
        self._heights: dict[str, int] = {}
        package_ids = {}
        self.endorsing_orgs: dict[str, str] = {}
        """MSP ID -> short name (``org1``) of the orgs that approve and endorse the test namespaces."""
        for org in self.profile.orgs.values():
            short = org.msp_dir("Admin").parents[2].name.split(".")[0]  # org1.example.com -> org1
            package_id = run_dir / "chaincode" / PACKAGE_OF / short / "package_id"
            if package_id.is_file():  # an org that joined without the chaincode cannot endorse it
                package_ids[org.mspid] = package_id.read_text().strip()
                self.endorsing_orgs[org.mspid] = short
        self._admins = {mspid: self.profile.connect(mspid, user="Admin") for mspid in package_ids}
        self.namespaces = Namespaces(self._admins, package_ids, self.wait_for_block)
        started = time.monotonic()
        for mspid in self._admins:  # a network just brought up may not know its other orgs' peers yet
            self.namespaces.until_endorsable(mspid, PACKAGE_OF, timeout=120)
        self.startup_wait = time.monotonic() - started
        first = next(iter(self._admins))
        self.index = BlockIndex(self._admins[first], first)

    def gateway(self, identity: Identity, signer: Signer, clock: Callable[[], float]) -> Gateway:
        """A connection to the peer of the org the identity claims, stamping proposals with ``clock``."""
        backend = self.profile.backend(identity.mspid, identity, signer, clock=clock)
        return connect(identity, signer=signer, backend=EveryPeerCommits(backend, self.wait_for_block))

    def wait_for_block(self, number: int, timeout: float = 30.0) -> None:
        """Returns once every org's peer has committed block ``number``."""
        deadline = time.monotonic() + timeout
        for mspid, admin in self._admins.items():
            while self._heights.get(mspid, 0) <= number:
                info = _evaluate(admin, "qscc", "GetChainInfo", CHANNEL.encode(), org=mspid)
                self._heights[mspid] = ledger_pb2.BlockchainInfo.FromString(info).height
                if self._heights[mspid] <= number:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"peer of {mspid} has not committed block {number} in {timeout} s")
                    time.sleep(0.005)

    def consortium(self) -> FabricConsortium:
        return FabricConsortium(self)

    def close(self) -> None:
        self.namespaces.close()
        for admin in self._admins.values():
            admin.close()


class FabricConsortium(Consortium):
    """Named clients on a fresh chaincode namespace of the native network."""

    # the peer's proposal check; the gateway answers ABORTED to Endorse and FAILED_PRECONDITION to Evaluate
    REFUSED_CREATOR = (("ABORTED", "FAILED_PRECONDITION"), "creator org unknown")

    def __init__(self, testbed: FabricTestbed) -> None:
        super().__init__()
        self.testbed = testbed
        self.chaincode = testbed.namespaces.take()
        self._offset_file = clock_offset_file()
        self._offset_file.write_text("0")

    def advance(self, seconds: float) -> None:
        """Moves the clients' clock and the endorsers' (their chaincode servers read the offset file)."""
        super().advance(seconds)
        self._offset_file.write_text(repr(self.clock.offset))

    def close(self) -> None:
        self._offset_file.write_text("0")
        super().close()

    def identity(self, mspid: str, name: str, *, admin: bool = False) -> tuple[Identity, Signer]:
        return self.testbed.members.identity(mspid, name, admin=admin)

    def issuer(self, mspid: str) -> Organization:
        return self.testbed.members.issuer(mspid)

    def _gateway(self, identity: Identity, signer: Signer, clock: Callable[[], float]) -> Gateway:
        return self.testbed.gateway(identity, signer, clock)

    def ledger_state(self) -> list[LedgerTx]:
        return self.testbed.index.transactions(self.chaincode)

    def blocks(self) -> list[bytes]:
        numbers = sorted({tx.block for tx in self.ledger_state()})
        return [self.testbed.index.block(n) for n in numbers]

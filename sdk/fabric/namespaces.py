"""Fresh chaincode namespaces on a network brought up here: new definitions (``fl_<run>_<n>``) of a package the
network already installed, approved by every organisation and committed, so the peers dial the same
chaincode-as-a-service servers (no new process). Each namespace is an empty ledger: the contract tests take one per
test, the benchmarks one per measured round. Definitions are deployed in batches (all approvals in one block, all
commits in the next). The channel's default endorsement policy (MAJORITY) applies.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fabric_protos.peer.lifecycle import lifecycle_pb2

from fedledger.chaincode.errors import ContractError
from fedledger.chaincode.names import DEFAULT_CHANNEL
from fedledger.sdk.backend import Proposal
from fedledger.sdk.errors import EndorseError
from fedledger.sdk.fabric.backend import FabricGatewayBackend

CHANNEL = DEFAULT_CHANNEL
PACKAGE_OF = "fedledger"
"""The installed chaincode whose package every namespace reuses."""


class Namespaces:
    """Fresh chaincode definitions of the installed ``fedledger`` package, deployed ``batch`` at a time."""

    def __init__(
        self,
        admins: dict[str, FabricGatewayBackend],
        package_ids: dict[str, str],
        wait_for_block: Callable[[int], None],
        batch: int = 8,
    ) -> None:
        self._admins = admins
        self._wait_for_block = wait_for_block
        self._package_ids = package_ids
        self._batch = batch
        self._prefix = f"fl_{uuid.uuid4().hex[:6]}_"
        self._counter = 0
        self._ready: list[str] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2 * batch, thread_name_prefix="lifecycle")

    def take(self) -> str:
        with self._lock:
            if not self._ready:
                self._ready = self.deploy(self._batch)
            return self._ready.pop(0)

    def deploy(self, count: int) -> list[str]:
        """Approves ``count`` new definitions by every org (one block) and commits them (the next), then
        waits until every org's gateway can have each of them endorsed."""
        names = [f"{self._prefix}{self._counter + i}" for i in range(count)]
        self._counter += count
        approvals = [(mspid, name) for name in names for mspid in self._admins]
        # every org's peer must have every approval before the commit is endorsed by all of them: a peer that
        # lags a block behind reads other approvals, and the gateway refuses the mismatching endorsements
        self._wait_for_block(max(self._pool.map(lambda job: self._approve(*job), approvals)))
        self._wait_for_block(max(self._pool.map(self._commit, names)))
        list(self._pool.map(lambda job: self.until_endorsable(*job), approvals))
        return names

    def until_endorsable(self, mspid: str, name: str, timeout: float = 30.0) -> None:
        """An unknown function must come back as the contract's own error, endorsed through ``mspid``'s gateway:
        its endorsement plan needs the other orgs' peers (which gossip announces some seconds after the
        network starts) and to know that they have the definition ``name``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._admins[mspid].endorse(Proposal(CHANNEL, name, "__fedledger_ping__", ()))
            except ContractError:
                return
            except EndorseError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _approve(self, mspid: str, name: str) -> int:
        source = lifecycle_pb2.ChaincodeSource(
            local_package=lifecycle_pb2.ChaincodeSource.Local(package_id=self._package_ids[mspid])
        )
        args = lifecycle_pb2.ApproveChaincodeDefinitionForMyOrgArgs(sequence=1, name=name, version="1.0", source=source)
        return self._lifecycle(mspid, "ApproveChaincodeDefinitionForMyOrg", args.SerializeToString(), (mspid,))

    def _commit(self, name: str) -> int:
        args = lifecycle_pb2.CommitChaincodeDefinitionArgs(sequence=1, name=name, version="1.0")
        mspid = next(iter(self._admins))
        return self._lifecycle(mspid, "CommitChaincodeDefinition", args.SerializeToString(), tuple(self._admins))

    def _lifecycle(self, mspid: str, function: str, args: bytes, endorsers: tuple[str, ...]) -> int:
        proposal = Proposal(CHANNEL, "_lifecycle", function, (args,), {}, endorsers)
        return self._admins[mspid].submit(proposal).block_number

    def close(self) -> None:
        self._pool.shutdown()

"""LocalFabricNetwork clients: a submit returns only once every organisation's peer has the block."""

from __future__ import annotations

import pytest

pytest.importorskip("fabric_protos")

from fabric_protos.common import ledger_pb2

from fedledger.sdk.backend import Proposal
from fedledger.sdk.fabric.local import LocalFabricNetwork

pytestmark = pytest.mark.fabric


def test_submit_waits_until_every_org_has_the_block(fabric_testbed, tmp_path):
    network = LocalFabricNetwork(fabric_testbed.run_dir, tmp_path)
    network.chaincode = fabric_testbed.namespaces.take()
    fabric_testbed.namespaces.until_endorsable("Org1MSP", network.chaincode)
    admin = network.client("Org1MSP", "Admin", admin=True)
    backend = admin.contract._backend
    for _ in range(5):
        block = admin.contract.submit("WhoAmI").block_number  # a query submitted is still ordered into a block
        for mspid in ("Org1MSP", "Org2MSP"):
            info = backend.evaluate(Proposal("mychannel", "qscc", "GetChainInfo", (b"mychannel",), {}, (mspid,)))
            assert ledger_pb2.BlockchainInfo.FromString(info).height > block

"""Faults of a real network that a member rides out (issue 12): the Raft leader dying with transactions in flight,
and the member's own gateway peer going down. Real processes, stopped by their PIDs and revived by network-up.sh;
every test puts the network back as it found it."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fedledger.sdk.backend import Proposal
from fedledger.sdk.errors import EndorseError
from fedledger.sdk.fabric import FabricGatewayBackend, NetworkProfile, load_network_dir

from ..support import UpdateFactory, dp, ready_round
from .consortium import BlockIndex
from .fabric_cli import REPO, FabricCli
from .faults import dying, killed, leader_orderer

pytestmark = [pytest.mark.fabric, pytest.mark.timeout(600)]


@pytest.fixture
def profile(fabric_network: FabricCli) -> NetworkProfile:
    return load_network_dir(fabric_network.run)


def _who_am_i(profile: NetworkProfile) -> Proposal:
    return Proposal(profile.channel, profile.chaincode, "WhoAmI", ())


#: Attempts at losing a transaction with the leader: the gateway itself tries orderers in turn, so when it happens
#: to try the hanging leader first and then a follower after the new election, nothing is lost and the SDK has
#: nothing to re-submit (about one attempt in three). Every attempt must still commit.
LEADER_LOSS_ATTEMPTS = 4


def test_a_transaction_swallowed_by_a_dying_raft_leader_is_submitted_again(fabric_network, profile):
    backend = profile.connect("Org1", user="User1")
    try:
        for _ in range(LEADER_LOSS_ATTEMPTS):
            transaction = backend.endorse(_who_am_i(profile))
            # The hanging leader keeps its connections: a follower acknowledges the submit and forwards the
            # transaction to it, where it is lost when it dies.
            with dying(fabric_network.run, leader_orderer(fabric_network.run)):
                code, block = backend.order(transaction)
            assert code == "VALID"
            assert fabric_network.committed_tx(transaction.transaction_id, profile.chaincode).validation_code == "VALID"
            assert backend.commit_status(profile.channel, transaction.transaction_id) == ("VALID", block)
            if backend.resubmitted:
                break
        assert backend.resubmitted >= 1, f"the leader lost no transaction in {LEADER_LOSS_ATTEMPTS} attempts"
    finally:
        backend.close()


def test_a_copy_submitted_after_the_commit_is_invalidated_and_the_first_commit_is_reported(profile):
    backend = profile.connect("Org1", user="User1")
    try:
        transaction = backend.endorse(_who_am_i(profile))
        first = backend.order(transaction)
        assert first[0] == "VALID"
        backend.submit_endorsed(transaction)  # the same transaction id again, as after a lost commit status
        index = BlockIndex(backend, "Org1MSP")
        deadline = time.monotonic() + 60
        while not (
            copies := [
                tx for tx in index.transactions(profile.chaincode) if tx.transaction_id == transaction.transaction_id
            ]
        )[1:]:
            assert time.monotonic() < deadline, "the second copy never reached a block"
            time.sleep(0.2)
        assert [tx.validation_code for tx in copies] == ["VALID", "DUPLICATE_TXID"]
        assert copies[0].block == first[1]
        # What a member whose commit status was lost sees: the first copy's success, however often it re-submits.
        assert backend.order(transaction) == first
    finally:
        backend.close()


def test_a_round_completes_when_the_raft_leader_dies_mid_round(fabric_network, fabric_testbed):
    consortium = fabric_testbed.consortium()
    try:
        aggregator, members, _ = ready_round(consortium, trainers=4, rules={"detector_min_updates": 10})
        updates = UpdateFactory()

        def submit(i: int):
            return members[i].submit_update(1, updates.bytes(), samples=100 + i, privacy=dp(1.0), train_loss=0.5)

        submit(0)
        with dying(fabric_network.run, leader_orderer(fabric_network.run)), ThreadPoolExecutor(3) as pool:
            recorded = list(pool.map(submit, range(1, 4)))
        assert len({update.participant for update in recorded}) == 3
        aggregator.close_round(1)
        finalized = aggregator.finalize_round(1)
        assert sorted(finalized.accepted) == sorted(member.whoami()["id"] for member in members)
    finally:
        consortium.close()


@pytest.fixture(scope="module")
def three_orgs(fabric_network: FabricCli) -> NetworkProfile:
    """Org3 in the channel (`make add-org`, a no-op when it is): with MAJORITY of three, two orgs endorse alone."""
    proc = subprocess.run(["make", "-s", "add-org"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return load_network_dir(fabric_network.run)


def test_a_member_carries_on_through_another_gateway_when_its_peer_is_down(fabric_network, three_orgs):
    profile = three_orgs
    everyone = [org.mspid for org in profile.orgs.values()]
    backend = profile.connect("Org1", user="User1", committed_on=everyone)
    alone: FabricGatewayBackend = profile.connect("Org1", user="User1", fallbacks=())
    try:
        with killed(fabric_network.run, "peer0.org1"):
            status = subprocess.run(["network/network-status.sh"], cwd=REPO, capture_output=True, text=True).stdout
            assert "down: peer0.org1 " in status
            assert [
                line.split()[4] for line in status.splitlines() if line.startswith("  peer0.org1 ") and " pid " in line
            ] == ["DOWN"]
            assert json.loads(backend.evaluate(_who_am_i(profile)))["mspid"] == "Org1MSP"
            assert backend.gateways.current.mspid != "Org1MSP"
            assert backend.gateways.failovers == 1
            result = backend.submit(_who_am_i(profile))  # endorsed by the two organisations whose peers are up
            assert json.loads(result.result)["mspid"] == "Org1MSP"
            assert (
                fabric_network.committed_tx(result.transaction_id, profile.chaincode, org=2).validation_code == "VALID"
            )

            with pytest.raises(EndorseError) as caught:
                alone.evaluate(_who_am_i(profile))
            first_line = str(caught.value).splitlines()[0]
            assert caught.value.code == "UNAVAILABLE"
            assert profile.org("Org1").endpoint in first_line and "make network-status" in first_line
    finally:
        backend.close()
        alone.close()

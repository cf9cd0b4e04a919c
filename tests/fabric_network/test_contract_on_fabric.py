"""The contract on the real network where Fabric itself takes part: the proposal timestamp every
endorser bounds by its own clock, and what happens when one org's chaincode server is down. (Identity
and replay tests run on both backends in tests/contract/; these have no embedded counterpart.)"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.errors import ContractRejected, EndorseError

from ..support import UpdateFactory, dp, only_on, ready_round, world
from .fabric_cli import REPO
from .fixtures import alive

if TYPE_CHECKING:  # the module must import without the 'fabric' extra (the tests then skip)
    from .consortium import FabricConsortium

pytestmark = pytest.mark.fabric

DAY = 86400.0


@only_on("fabric")
@pytest.mark.parametrize(
    ("skew", "accepted"),
    [(120.0, True), (3 * DAY, False), (-30 * DAY, False)],
    ids=["2-minutes-ahead", "3-days-ahead", "30-days-behind"],
)
def test_every_endorser_bounds_the_proposal_timestamp_by_its_own_clock(
    consortium: FabricConsortium, skew: float, accepted: bool, tmp_path: Path
) -> None:
    """``connect(..., clock=)`` (through LocalFabricNetwork, as the Fabric demo connects) stamps the channel
    header, and the peers themselves take any timestamp. Each org's chaincode compares it with its server's
    clock: within ``max_clock_skew_seconds`` (300 s) the transaction is endorsed by both and carries that
    time; beyond it both refuse to endorse, with the contract's typed error, and nothing is committed."""
    from fedledger.chaincode.errors import ClockSkew
    from fedledger.sdk.fabric.local import LocalFabricNetwork

    members = LocalFabricNetwork(consortium.testbed.run_dir, tmp_path, clock=lambda: time.time() + skew)

    def client(mspid: str, name: str, *, admin: bool = False) -> FedLedgerClient:
        network = members.client(mspid, name, admin=admin).network
        assert network is not None
        return FedLedgerClient(network.get_contract(consortium.chaincode), network)

    admin = client("Org1MSP", "Admin", admin=True)
    before = consortium.ledger_state()
    if not accepted:
        with pytest.raises(ClockSkew, match="behind|ahead") as caught:
            admin.init_consortium({"member_msps": ["Org1MSP", "Org2MSP"]})
        assert isinstance(caught.value, EndorseError)
        assert consortium.ledger_state() == before
        return
    rules = admin.init_consortium({"member_msps": ["Org1MSP", "Org2MSP"]})
    assert rules.created_at == pytest.approx(time.time() + skew, abs=60)
    assert admin.last_result is not None
    consortium.testbed.wait_for_block(admin.last_result.block_number)  # Org2's peer has it too
    assert consortium.admin("Org2MSP").rules() == rules


@contextmanager
def chaincode_servers_down(consortium: FabricConsortium, orgs: list[str]) -> Iterator[None]:
    """Stops the fedledger chaincode servers of ``orgs`` (``org2``...) by their PID files, and revives them
    afterwards with network-up.sh, which restarts dead processes of a built network and waits until each
    peer reaches its server again."""
    pid_files = [consortium.testbed.run_dir / "pids" / f"ccserver.{org}.pid" for org in orgs]
    pids = [int(pid_file.read_text()) for pid_file in pid_files]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids), f"chaincode servers {pids} did not stop"
    try:
        yield
    finally:
        revived = subprocess.run(["network/network-up.sh"], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert revived.returncode == 0, revived.stderr[-2000:]
        assert all(int(pid_file.read_text()) not in pids for pid_file in pid_files)


@only_on("fabric")
def test_without_a_majority_of_chaincode_servers_an_update_fails_clearly_and_nothing_is_committed(
    consortium: FabricConsortium, updates: UpdateFactory
) -> None:
    """With Org1 and Org2, MAJORITY means both: Org2's server down is enough (with n orgs, n - n//2 down)."""
    aggregator, (org1_trainer, org2_trainer), _genesis = ready_round(consortium, trainers=2)
    orgs = list(consortium.testbed.endorsing_orgs.items())  # Org1 first: it stays up
    down = dict(orgs[len(orgs) // 2 :])
    assert "Org1MSP" not in down and len(orgs) - len(down) < len(orgs) // 2 + 1
    data = updates.bytes()
    before = world(aggregator), consortium.ledger_state()
    with chaincode_servers_down(consortium, list(down.values())):
        for trainer in (org1_trainer, org2_trainer):  # through Org1's gateway, and through Org2's
            with pytest.raises(EndorseError) as info:
                trainer.submit_update(1, data, samples=100, privacy=dp(1.0), train_loss=0.5)
            failure = info.value
            assert not isinstance(failure, ContractRejected), failure  # no verdict at all, not a refusal
            unreachable = [d for d in failure.details if "could not launch chaincode" in d]
            assert any(mspid in d for d in unreachable for mspid in down), failure
    assert (world(aggregator), consortium.ledger_state()) == before
    # the same update goes through once the servers are back
    record = org1_trainer.submit_update(1, data, samples=100, privacy=dp(1.0), train_loss=0.5)
    assert record.status == "submitted"
    assert [tx.validation_code for tx in consortium.ledger_state()][len(before[1]) :] == ["VALID"]

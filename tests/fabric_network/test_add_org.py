"""`make add-org`: Org3 joins the live channel, counts in the MAJORITY endorsement policy, is admitted to the
contract's consortium, and a member of Org3 takes part in a round."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from fedledger.chaincode.errors import AlreadyExists, PermissionDenied
from fedledger.network.admit import admit_member
from fedledger.sdk.fabric.local import LocalFabricNetwork

from ..shares_support import organisation_joins, shared_round
from ..support import SCHEMA, UpdateFactory, common_name, dp, enrol, ready_round
from .consortium import FabricTestbed
from .fabric_cli import CHANNEL, REPO, FabricCli

pytestmark = pytest.mark.fabric


@pytest.fixture(scope="module")
def with_org3(fabric_network: FabricCli, compat_cc: str, tmp_path_factory: pytest.TempPathFactory) -> FabricCli:
    # A consortium initialised before Org3 joins, as on a live network: add-org must admit Org3 to it.
    founder = LocalFabricNetwork(fabric_network.run, tmp_path_factory.mktemp("founder")).client(
        "Org1MSP", "Admin", admin=True
    )
    with contextlib.suppress(AlreadyExists):
        founder.init_consortium({"member_msps": ["Org1MSP", "Org2MSP"]})
    proc = subprocess.run(["make", "-s", "add-org"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return FabricCli()


def _height(cli: FabricCli, org: int) -> int:
    out = subprocess.run(
        ["peer", "channel", "getinfo", "-c", CHANNEL], env=cli.env(org), capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r'"height":(\d+)', out)
    assert match is not None, out
    return int(match.group(1))


def test_org3_is_described_and_its_peer_caught_up(with_org3: FabricCli) -> None:
    assert "Org3MSP" in with_org3.doc["organizations"]
    endpoints = {org["peer"]["endpoint"] for org in with_org3.doc["organizations"].values()}
    assert len(endpoints) == 3 and with_org3.org(3)["peer"]["endpoint"].startswith("127.0.0.1:")
    with_org3.invoke("fedledger_compat", ["Put", "org3-sync", "x"], peers=(1, 2))
    assert abs(_height(with_org3, 3) - _height(with_org3, 1)) <= 1


def test_the_config_update_was_signed_by_org1_and_org2_admins(with_org3: FabricCli, tmp_path) -> None:
    from fabric_protos.common import common_pb2, configtx_pb2
    from fabric_protos.msp import identities_pb2

    block_file = tmp_path / "config.block"
    orderer = with_org3.doc["orderers"][0]
    subprocess.run(
        [
            "peer",
            "channel",
            "fetch",
            "config",
            str(block_file),
            "-c",
            CHANNEL,
            "-o",
            orderer["endpoint"],
            "--tls",
            "--cafile",
            orderer["tls_root_cert"],
        ],
        env=with_org3.env(1),
        check=True,
        capture_output=True,
    )
    block = common_pb2.Block.FromString(block_file.read_bytes())
    payload = common_pb2.Payload.FromString(common_pb2.Envelope.FromString(block.data.data[0]).payload)
    config_envelope = configtx_pb2.ConfigEnvelope.FromString(payload.data)
    assert "Org3MSP" in config_envelope.config.channel_group.groups["Application"].groups
    last = common_pb2.Payload.FromString(config_envelope.last_update.payload)
    update = configtx_pb2.ConfigUpdateEnvelope.FromString(last.data)
    signers = sorted(
        identities_pb2.SerializedIdentity.FromString(
            common_pb2.SignatureHeader.FromString(s.signature_header).creator
        ).mspid
        for s in update.signatures
    )
    assert signers == ["Org1MSP", "Org2MSP"]


def test_majority_now_counts_org3(with_org3: FabricCli) -> None:
    cc = "fedledger_compat"
    assert with_org3.invoke(cc, ["Put", "org3-majority", "a"], peers=(3,)).status == "ENDORSEMENT_POLICY_FAILURE"
    assert with_org3.invoke(cc, ["Put", "org3-majority", "b"], peers=(1, 3)).status == "VALID"
    assert with_org3.invoke(cc, ["Put", "org3-majority", "c"], peers=(2, 3)).status == "VALID"
    assert with_org3.query(cc, ["Get", "org3-majority"], org=3) == b"c"


def test_org3_runs_fedledger_with_its_own_server_and_approval(with_org3: FabricCli) -> None:
    who = json.loads(with_org3.query("fedledger", ["WhoAmI"], org=3))
    assert who["mspid"] == "Org3MSP"
    proc = subprocess.run(
        ["peer", "lifecycle", "chaincode", "querycommitted", "-C", CHANNEL, "-n", "fedledger", "-O", "json"],
        env=with_org3.env(3, "Admin"),
        capture_output=True,
        check=True,
    )
    assert json.loads(proc.stdout)["approvals"] == {"Org1MSP": True, "Org2MSP": True, "Org3MSP": True}
    assert (with_org3.run / "pids" / "ccserver.org3.pid").exists()


def test_add_org_again_changes_nothing(with_org3: FabricCli) -> None:
    proc = subprocess.run(["make", "-s", "add-org"], cwd=REPO, capture_output=True, text=True, check=True)
    assert "Org3MSP is already a member of mychannel" in proc.stderr
    assert "Org3MSP is already a member of the consortium on fedledger" in proc.stderr


def test_the_consortium_rules_admit_org3(with_org3: FabricCli) -> None:
    rules = json.loads(with_org3.query("fedledger", ["GetRules", ""], org=3))
    assert {"Org1MSP", "Org2MSP", "Org3MSP"} <= set(rules["member_msps"])


def test_a_member_of_org3_registers_and_submits_an_update(with_org3: FabricCli, tmp_path: Path) -> None:
    # A testbed made after add-org: Org3 approves the fresh namespace, its peer endorses it.
    testbed = FabricTestbed(with_org3.run, tmp_path)
    consortium = testbed.consortium()
    try:
        assert "Org3MSP" in testbed.endorsing_orgs
        _, _, _ = ready_round(consortium, trainers=2, rules={"detector_min_updates": 10})
        with pytest.raises(PermissionDenied, match="not the admin of a member organisation"):
            consortium.admin("Org3MSP").enrol_trainer(
                common_name("Org3MSP", "trainer-org3"), dataset_size=100, schema_hash=SCHEMA
            )
        assert "admitted" in admit_member(with_org3.run, "Org3MSP", chaincode=consortium.chaincode)
        member = enrol(consortium, "Org3MSP", "trainer-org3")
        update = member.submit_update(1, UpdateFactory().bytes(), samples=100, privacy=dp(1.0), train_loss=0.5)
        assert update.participant == member.whoami()["id"]
        assert with_org3.committed_tx(update.tx_id, consortium.chaincode, org=3).validation_code == "VALID"
    finally:
        consortium.close()
        testbed.close()


def test_org3_holds_shares_from_the_round_after_it_registered_its_key(with_org3: FabricCli, tmp_path: Path) -> None:
    testbed = FabricTestbed(with_org3.run, tmp_path)
    consortium = testbed.consortium()
    try:
        run = shared_round(consortium)
        organisation_joins(
            run,
            consortium,
            UpdateFactory(seed=7),
            lambda: admit_member(with_org3.run, "Org3MSP", chaincode=consortium.chaincode),
        )
    finally:
        consortium.close()
        testbed.close()

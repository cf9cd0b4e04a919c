"""The network of `make network-up`: topology, identities, channel config, lifecycle, policy."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from .fabric_cli import CHANNEL, REPO, FabricCli

pytestmark = pytest.mark.fabric


def _ou(cert_path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    units = []
    for attribute in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME):
        assert isinstance(attribute.value, str)
        units.append(attribute.value)
    return units


def test_network_json_describes_the_running_network(fabric_network: FabricCli) -> None:
    doc = fabric_network.doc
    assert (fabric_network.run / "READY").exists()
    assert doc["channel"] == CHANNEL and doc["chaincode"] == "fedledger"
    assert {"Org1MSP", "Org2MSP"} <= set(doc["organizations"])
    for mspid, org in doc["organizations"].items():
        assert org["mspid"] == mspid
        host, port = org["peer"]["endpoint"].split(":")
        assert host == "127.0.0.1" and int(port) > 0
        assert org["peer"]["tls_host_override"].startswith("peer0.org")
        assert Path(org["peer"]["tls_root_cert"]).is_file()
        # NodeOUs: Admin@ is OU=admin, User1@ is OU=client.
        admin = Path(org["users"]["Admin"]["msp_dir"]) / "signcerts"
        user = Path(org["users"]["User1"]["msp_dir"]) / "signcerts"
        assert "admin" in _ou(next(admin.iterdir()))
        assert "client" in _ou(next(user.iterdir()))
        assert any((Path(org["users"]["User1"]["msp_dir"]) / "keystore").iterdir())
    assert len(doc["orderers"]) == 3


def test_every_node_reports_healthy(fabric_network: FabricCli) -> None:
    urls = [org["peer"]["operations"] for org in fabric_network.doc["organizations"].values()]
    urls += [orderer["operations"] for orderer in fabric_network.doc["orderers"]]
    for url in urls:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
            assert json.load(response)["status"] == "OK", url


def _channel_config(cli: FabricCli, tmp_path: Path):
    from fabric_protos.common import common_pb2, configtx_pb2

    block_file = tmp_path / "config.block"
    orderer = cli.doc["orderers"][0]
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
        env=cli.env(1),
        check=True,
        capture_output=True,
    )
    block = common_pb2.Block.FromString(block_file.read_bytes())
    payload = common_pb2.Payload.FromString(common_pb2.Envelope.FromString(block.data.data[0]).payload)
    return configtx_pb2.ConfigEnvelope.FromString(payload.data).config.channel_group


def test_network_status_shows_every_process_its_port_and_the_raft_leader(fabric_network: FabricCli) -> None:
    from fedledger.network.health import raft_leader

    proc = subprocess.run(["make", "-s", "network-status"], cwd=REPO, capture_output=True, text=True, check=True)
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if " pid " in line}
    doc = fabric_network.doc
    expected = {f"orderer{i}": o["endpoint"] for i, o in enumerate(doc["orderers"], start=1)}
    for org in doc["organizations"].values():
        expected[org["peer"]["name"].removesuffix(".example.com")] = org["peer"]["endpoint"]
        expected[f"ccserver.org{org['mspid'][3]}"] = org["chaincode_server"]
    for name, endpoint in expected.items():
        assert rows[name][1] == endpoint and rows[name][4] == "up", proc.stdout
    roles = [rows[f"orderer{i}"][-1] for i in (1, 2, 3)]
    assert sorted(roles) == ["follower", "follower", "leader"], proc.stdout
    assert f"raft leader: orderer{raft_leader(fabric_network.run)}" in proc.stdout


def test_channel_config_raft_batch_timeout_anchor_peers_majority(fabric_network: FabricCli, tmp_path) -> None:
    from fabric_protos.common import configuration_pb2, policies_pb2
    from fabric_protos.orderer import configuration_pb2 as orderer_config
    from fabric_protos.orderer.etcdraft import configuration_pb2 as raft_config
    from fabric_protos.peer import configuration_pb2 as peer_config

    group = _channel_config(fabric_network, tmp_path)
    orderer = group.groups["Orderer"]
    batch_timeout = orderer_config.BatchTimeout.FromString(orderer.values["BatchTimeout"].value).timeout
    assert batch_timeout in {"50ms", "100ms", "150ms", "200ms", "250ms"}  # network/lib.sh: 50ms by default
    consensus = orderer_config.ConsensusType.FromString(orderer.values["ConsensusType"].value)
    assert consensus.type == "etcdraft"
    consenters = raft_config.ConfigMetadata.FromString(consensus.metadata).consenters
    assert sorted(c.port for c in consenters) == sorted(
        int(o["endpoint"].split(":")[1]) for o in fabric_network.doc["orderers"]
    )
    assert all(c.host == "127.0.0.1" for c in consenters)

    app = group.groups["Application"]
    for mspid in ("Org1MSP", "Org2MSP"):
        anchors = peer_config.AnchorPeers.FromString(app.groups[mspid].values["AnchorPeers"].value)
        assert [(a.host, a.port) for a in anchors.anchor_peers] == [
            ("127.0.0.1", int(fabric_network.org(int(mspid[3]))["peer"]["endpoint"].split(":")[1]))
        ]
    for name in ("Endorsement", "LifecycleEndorsement"):
        policy = app.policies[name].policy
        assert policy.type == policies_pb2.Policy.IMPLICIT_META
        meta = policies_pb2.ImplicitMetaPolicy.FromString(policy.value)
        assert (meta.rule, meta.sub_policy) == (policies_pb2.ImplicitMetaPolicy.MAJORITY, "Endorsement")
    assert configuration_pb2.Capabilities.FromString(app.values["Capabilities"].value).capabilities.keys() >= {"V2_5"}


def test_fedledger_definition_uses_the_channel_majority_policy(fabric_network: FabricCli) -> None:
    from fabric_protos.peer import policy_pb2

    proc = subprocess.run(
        ["peer", "lifecycle", "chaincode", "querycommitted", "-C", CHANNEL, "-n", "fedledger", "-O", "json"],
        env=fabric_network.env(1, "Admin"),
        check=True,
        capture_output=True,
    )
    definition = json.loads(proc.stdout)
    assert definition["version"] == "1.0" and definition["sequence"] == 1
    assert all(definition["approvals"].values()) and {"Org1MSP", "Org2MSP"} <= set(definition["approvals"])
    policy = policy_pb2.ApplicationPolicy.FromString(base64.b64decode(definition["validation_parameter"]))
    assert policy.WhichOneof("Type") == "channel_config_policy_reference"
    assert policy.channel_config_policy_reference == "/Channel/Application/Endorsement"


def test_real_contract_answers_on_every_peer(fabric_network: FabricCli) -> None:
    for mspid in fabric_network.doc["organizations"]:
        n = int(mspid[3])
        who = json.loads(fabric_network.query("fedledger", ["WhoAmI"], org=n))
        assert who["mspid"] == mspid
        assert who["id"] == f"{mspid}:User1@org{n}.example.com"
        assert who["admin"] is False


def test_one_org_alone_cannot_get_a_transaction_committed(fabric_network: FabricCli, compat_cc: str) -> None:
    alone = fabric_network.invoke(compat_cc, ["Put", "alone", "x"], peers=(1,))
    assert alone.status == "ENDORSEMENT_POLICY_FAILURE"
    both = fabric_network.invoke(compat_cc, ["Put", "alone", "y"], peers=(1, 2))
    assert both.status == "VALID"
    assert fabric_network.query(compat_cc, ["Get", "alone"]) == b"y"


def test_a_lone_transaction_commits_well_under_the_default_batch_timeout(
    fabric_network: FabricCli, compat_cc: str
) -> None:
    fabric_network.invoke(compat_cc, ["Put", "warm", "x"])
    started = time.monotonic()
    result = fabric_network.invoke(compat_cc, ["Put", "latency", "x"])
    elapsed = time.monotonic() - started
    assert result.status == "VALID"
    assert elapsed < 1.5, f"endorse+order+commit took {elapsed:.2f}s (default BatchTimeout alone is 2s)"


def test_network_up_again_leaves_a_healthy_network_alone(fabric_network: FabricCli) -> None:
    pids = {p.name: p.read_text() for p in (fabric_network.run / "pids").iterdir()}
    started = time.monotonic()
    proc = subprocess.run(["make", "-s", "network-up"], cwd=REPO, capture_output=True, text=True, check=True)
    assert time.monotonic() - started < 10
    assert "already up and healthy" in proc.stderr
    assert {p.name: p.read_text() for p in (fabric_network.run / "pids").iterdir()} == pids


def test_the_binaries_found_once_are_found_again_without_fabric_bin(fabric_network: FabricCli) -> None:
    """`make network-up` needs FABRIC_BIN only the first time: fabric-bin.sh reads the paths.env it wrote."""
    paths = REPO / "fabric-bin" / "paths.env"
    before = paths.read_text()
    env = {k: v for k, v in os.environ.items() if k != "FABRIC_BIN"}
    env["PATH"] = "/usr/bin:/bin"  # no peer on PATH either
    found = subprocess.run(["network/fabric-bin.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    assert "already available" in found.stderr
    assert paths.read_text() == before

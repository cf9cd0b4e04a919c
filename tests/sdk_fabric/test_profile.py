"""Building backends from network descriptions (no peer is contacted)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from fedledger.sdk.fabric import (
    FabricGatewayBackend,
    add_network_arguments,
    backend_from_args,
    load_connection_profile,
    load_network_dir,
)

from .certs import make_msp


def _network_json(tmp_path: Path) -> Path:
    """A run/network folder shaped like the one network/tools.py ``network-json`` writes."""
    run = tmp_path / "run" / "network"
    organizations: dict[str, dict] = {}
    for n, port in ((1, 7051), (2, 9051)):
        domain = f"org{n}.example.com"
        base = run / "organizations" / "peerOrganizations" / domain
        for user in ("Admin", "User1"):
            make_msp(base / "users" / f"{user}@{domain}" / "msp", common_name=f"{user}@{domain}")
        (base / "tlsca").mkdir()
        (base / "tlsca" / f"tlsca.{domain}-cert.pem").write_text(f"TLS CA org{n}")
        organizations[f"Org{n}MSP"] = {
            "mspid": f"Org{n}MSP",
            "peer": {
                "name": f"peer0.{domain}",
                "endpoint": f"127.0.0.1:{port}",
                "tls_host_override": f"peer0.{domain}",
                "tls_root_cert": str(base / "tlsca" / f"tlsca.{domain}-cert.pem"),
                "operations": f"http://127.0.0.1:{9445 + n}",
            },
            "chaincode_server": f"127.0.0.1:{5999 + n * 2000}",
            "users": {
                user: {
                    "msp_dir": str(base / "users" / f"{user}@{domain}" / "msp"),
                    "tls_dir": str(base / "users" / f"{user}@{domain}" / "tls"),
                }
                for user in ("Admin", "User1")
            },
        }
    data = {
        "channel": "mychannel",
        "chaincode": "fedledger",
        "organizations": organizations,
        "orderers": [{"name": "orderer1.example.com", "endpoint": "127.0.0.1:7050"}],
    }
    (run / "network.json").write_text(json.dumps(data))
    return run


def test_network_json(tmp_path: Path):
    run = _network_json(tmp_path)
    profile = load_network_dir(run)
    assert (profile.channel, profile.chaincode) == ("mychannel", "fedledger")
    org2 = profile.org("org2MSP")
    assert org2.endpoint == "127.0.0.1:9051"
    assert org2.tls_root_cert == b"TLS CA org2"
    assert org2.server_name_override == "peer0.org2.example.com"
    users = run / "organizations" / "peerOrganizations" / "org2.example.com" / "users"
    assert org2.msp_dir("Admin") == users / "Admin@org2.example.com" / "msp"
    assert org2.msp_dir("user1") == users / "User1@org2.example.com" / "msp"
    assert profile.org("Org2") is org2 and org2.name == "Org2"
    backend = profile.connect("Org2", user="Admin")
    assert isinstance(backend, FabricGatewayBackend)
    assert backend.identity.mspid == "Org2MSP"
    backend.close()
    with pytest.raises(KeyError, match="Unknown organisation"):
        profile.org("Org9")
    with pytest.raises(KeyError, match="no MSP folder for user"):
        org2.msp_dir("Bob")


def test_test_network_organizations_layout(tmp_path: Path):
    # Prepare: the folders fabric-samples test-network writes (cryptogen or CA), minus what is not read.
    organizations = tmp_path / "test-network" / "organizations"
    for n in (1, 2):
        domain = f"org{n}.example.com"
        base = organizations / "peerOrganizations" / domain
        make_msp(base / "users" / f"User1@{domain}" / "msp", key_name="1a2b_sk")
        make_msp(base / "users" / f"Admin@{domain}" / "msp")
        tls = base / "peers" / f"peer0.{domain}" / "tls"
        tls.mkdir(parents=True)
        (tls / "ca.crt").write_text(f"CA {n}")
    # Org2's connection profile moves its peer (as a user who remapped ports would).
    (organizations / "peerOrganizations" / "org2.example.com" / "connection-org2.json").write_text(
        json.dumps(
            {
                "organizations": {"Org2": {"mspid": "Org2MSP", "peers": ["peer0.org2.example.com"]}},
                "peers": {
                    "peer0.org2.example.com": {
                        "url": "grpcs://localhost:19051",
                        "tlsCACerts": {"pem": "PEM 2"},
                        "grpcOptions": {"ssl-target-name-override": "peer0.org2.example.com"},
                    }
                },
            }
        )
    )
    # Execute: both the organizations folder and test-network itself are accepted
    for folder in (organizations, organizations.parent):
        profile = load_network_dir(folder, chaincode="basic")
        # Assert
        assert profile.chaincode == "basic" and profile.channel == "mychannel"
        org1, org2 = profile.org("Org1"), profile.org("Org2")
        assert (org1.mspid, org1.endpoint, org1.tls_root_cert) == ("Org1MSP", "localhost:7051", b"CA 1")
        assert org1.server_name_override == "peer0.org1.example.com"
        assert (org2.endpoint, org2.tls_root_cert) == ("localhost:19051", b"PEM 2")
        assert org1.msp_dir("User1").name == "msp"
        profile.connect("Org1").close()


def test_connection_profile_needs_msp_dirs(tmp_path: Path):
    make_msp(tmp_path / "msp")
    (tmp_path / "ca.pem").write_text("CA")
    profile_path = tmp_path / "profile.json"
    profile_path.write_text(
        json.dumps(
            {
                "channels": {"fl": {}},
                "organizations": {"Hospital": {"mspid": "HospitalMSP", "peers": ["p0"]}},
                "peers": {"p0": {"url": "grpcs://127.0.0.1:7051", "tlsCACerts": {"path": "ca.pem"}}},
            }
        )
    )
    profile = load_connection_profile(profile_path, msp_dirs={"Hospital": {"User1": tmp_path / "msp"}})
    hospital = profile.org("HospitalMSP")
    assert (profile.channel, hospital.endpoint, hospital.tls_root_cert) == ("fl", "127.0.0.1:7051", b"CA")
    assert hospital.server_name_override == "p0"
    profile.connect("Hospital").close()


def test_cli_arguments(tmp_path: Path):
    run = _network_json(tmp_path)
    parser = argparse.ArgumentParser()
    add_network_arguments(parser)
    args = parser.parse_args(["--network-dir", str(run), "--org", "Org2", "--user", "Admin", "--chaincode", "x"])
    profile, backend = backend_from_args(args, evaluate_timeout=1)
    assert profile.chaincode == "x"
    assert backend.identity.mspid == "Org2MSP" and backend.evaluate_timeout == 1
    backend.close()
    with pytest.raises(ValueError, match="Give --network-dir"):
        backend_from_args(parser.parse_args([]))


def test_missing_network_dir_says_what_to_do(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="make network-up"):
        load_network_dir(tmp_path)


def test_a_backend_fails_over_to_the_other_organisations_gateways_in_profile_order(tmp_path: Path):
    profile = load_network_dir(_network_json(tmp_path))
    backend = profile.connect("Org2", user="User1")
    assert [str(e) for e in backend.gateways.endpoints] == ["127.0.0.1:9051 (Org2MSP)", "127.0.0.1:7051 (Org1MSP)"]
    alone = profile.connect("Org2", user="User1", fallbacks=())
    assert len(alone.gateways.endpoints) == 1
    backend.close()
    alone.close()


def test_no_reachable_peer_is_one_cli_line_with_the_cause_and_what_to_do(tmp_path: Path, capsys):
    from fedledger.cli.main import main

    run = _network_json(tmp_path)
    doc = json.loads((run / "network.json").read_text())
    msp = Path(doc["organizations"]["Org1MSP"]["users"]["User1"]["msp_dir"])
    for port, org in enumerate(doc["organizations"].values(), start=1):
        org["peer"]["endpoint"] = f"127.0.0.1:{port}"  # nothing listens on ports 1 and 2
        org["peer"]["tls_root_cert"] = str(next((msp / "signcerts").iterdir()))  # any PEM certificate
    (run / "network.json").write_text(json.dumps(doc))
    argv = ["evaluate", "WhoAmI", "--network-dir", str(run), "--msp-dir", str(msp), "--mspid", "Org1MSP"]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "127.0.0.1:1 (Org1MSP), 127.0.0.1:2 (Org2MSP)" in err and "[UNAVAILABLE]" in err
    assert "make network-status" in err

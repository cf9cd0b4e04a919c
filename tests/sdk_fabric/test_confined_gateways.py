"""A proposal for some organisations' endorsers only (``endorsing_orgs``) reaches only their gateway peers, also
when failing over: its transient data may be one organisation's secret (sdk/fabric/endpoints.py).

Against two in-process fake gateways standing for Org1's and Org2's; the real network shows the endorsement
itself (tests/fabric_network/test_compat.py, state-based endorsement).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fedledger.identity import load_msp_identity
from fedledger.sdk.backend import Proposal
from fedledger.sdk.errors import EndorseError
from fedledger.sdk.fabric import FabricGatewayBackend
from fedledger.sdk.fabric.endpoints import GatewayEndpoint

from .certs import make_msp
from .fakegateway import FakeGateway, start_fake_gateway

SECRET = {"share": b"Org2's plaintext share"}


@pytest.fixture
def gateways() -> Iterator[tuple[FakeGateway, str, FakeGateway, str]]:
    server1, org1, port1 = start_fake_gateway()
    server2, org2, port2 = start_fake_gateway()
    yield org1, f"127.0.0.1:{port1}", org2, f"127.0.0.1:{port2}"
    server1.stop(grace=None)
    server2.stop(grace=None)


def _backend(tmp_path: Path, endpoint: str, *fallbacks: GatewayEndpoint) -> FabricGatewayBackend:
    make_msp(tmp_path / "msp")
    identity, signer = load_msp_identity(tmp_path / "msp", "Org1MSP")
    return FabricGatewayBackend(
        identity, signer, endpoint=endpoint, fallbacks=fallbacks, evaluate_timeout=2, endorse_timeout=2
    )


def _proposal(*endorsing_orgs: str) -> Proposal:
    return Proposal("mychannel", "fedledger", "Transient", [b"share"], SECRET, endorsing_orgs)


def test_a_proposal_for_another_org_goes_to_its_gateway_only_and_the_current_one_stays(gateways, tmp_path) -> None:
    org1, address1, org2, address2 = gateways
    backend = _backend(tmp_path, address1, GatewayEndpoint(address2, mspid="Org2MSP"))
    try:
        assert backend.evaluate(_proposal("Org2MSP")) == SECRET["share"]
        assert backend.endorse(_proposal("Org2MSP")).result == SECRET["share"]
        assert backend.evaluate(Proposal("mychannel", "fedledger", "Echo", [b"plain"])) == b"plain"
        assert backend.evaluate(_proposal("Org1MSP")) == SECRET["share"]
    finally:
        backend.close()
    assert org1.calls == {"Echo": 1, "Transient": 1}, "Org2's transient data reached Org1's gateway"
    assert org2.calls == {"Transient": 2}
    assert (backend.gateways.current.mspid, backend.gateways.failovers) == ("Org1MSP", 0)


def test_failover_stays_among_the_orgs_gateways(gateways, tmp_path) -> None:
    org1, address1, org2, address2 = gateways
    dead = GatewayEndpoint("127.0.0.1:1", mspid="Org2MSP")  # nothing listens on port 1
    backend = _backend(tmp_path, address1, dead, GatewayEndpoint(address2, mspid="Org2MSP"))
    try:
        assert backend.endorse(_proposal("Org2MSP")).result == SECRET["share"]
    finally:
        backend.close()
    assert (org1.calls["Transient"], org2.calls["Transient"]) == (0, 1)
    assert backend.gateways.current.mspid == "Org1MSP"


def test_no_reachable_gateway_of_the_org_fails_in_one_line_without_trying_others(gateways, tmp_path) -> None:
    org1, address1, _org2, _address2 = gateways
    backend = _backend(tmp_path, address1, GatewayEndpoint("127.0.0.1:1", mspid="Org2MSP"))
    try:
        with pytest.raises(EndorseError) as caught:
            backend.endorse(_proposal("Org2MSP"))
    finally:
        backend.close()
    assert caught.value.code == "UNAVAILABLE"
    message = str(caught.value)
    assert "\n" not in message
    assert "no gateway peer of Org2MSP is reachable (tried 127.0.0.1:1 (Org2MSP))" in message
    assert "start one of them and try again" in message
    assert org1.calls["Transient"] == 0


def test_no_configured_gateway_of_the_org_fails_before_sending_anything(gateways, tmp_path) -> None:
    org1, address1, _org2, _address2 = gateways
    backend = _backend(tmp_path, address1)
    try:
        with pytest.raises(EndorseError) as caught:
            backend.evaluate(_proposal("Org2MSP", "Org3MSP"))
    finally:
        backend.close()
    assert caught.value.code == "NO_GATEWAY"
    assert "\n" not in str(caught.value)
    assert "no gateway peer of Org2MSP or Org3MSP is configured" in str(caught.value)
    assert "add one to the connection profile" in str(caught.value)
    assert not org1.calls

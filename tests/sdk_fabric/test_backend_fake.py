"""The backend's steps against an in-process fake gateway: flow, retries, errors, events, deadlines.

The fake verifies every signature like a peer would, so these tests also prove the requests are
signed over the right bytes; the real-network tests (test_fabric_network.py) prove the rest.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fabric_protos.common import common_pb2

from fedledger.chaincode import errors as contract_errors
from fedledger.identity import load_msp_identity
from fedledger.sdk.backend import Proposal
from fedledger.sdk.errors import (
    CommitError,
    CommitStatusError,
    ContractRejected,
    EndorseError,
    GatewayError,
    SubmitError,
)
from fedledger.sdk.fabric import FabricGatewayBackend
from fedledger.sdk.fabric.backend import EndorsedTransaction
from fedledger.sdk.fabric.endpoints import GatewayEndpoint

from .certs import make_msp
from .fakegateway import start_fake_gateway


@pytest.fixture
def gateway(tmp_path: Path):
    server, servicer, port = start_fake_gateway()
    make_msp(tmp_path / "msp")
    identity, signer = load_msp_identity(tmp_path / "msp", "Org1MSP")
    backend = FabricGatewayBackend(
        identity,
        signer,
        endpoint=f"127.0.0.1:{port}",
        retry_backoff=0.001,
        evaluate_timeout=2,
        endorse_timeout=2,
        submit_timeout=2,
        commit_status_timeout=2,
    )
    yield backend, servicer
    backend.close()
    server.stop(grace=None)


def _proposal(function: str, *args: bytes, **kwargs) -> Proposal:
    return Proposal("mychannel", "fedledger", function, list(args), **kwargs)


def test_evaluate_returns_payload(gateway):
    backend, servicer = gateway
    assert backend.evaluate(_proposal("Echo", b"hello")) == b"hello"
    assert servicer.submitted == []


def test_submit_flow_returns_result_block_and_tx_id(gateway):
    backend, servicer = gateway
    result = backend.submit(_proposal("Echo", b"\x00payload"))
    assert result.result == b"\x00payload"
    assert len(result.transaction_id) == 64
    assert result.block_number == servicer.block
    assert len(servicer.submitted) == 1


def test_transient_reaches_the_endorser_but_not_the_ordered_envelope(gateway):
    backend, servicer = gateway
    secret = b"\xab" * (5 * 1024 * 1024)  # above gRPC's 4 MiB default message limit
    result = backend.submit(_proposal("Transient", b"update", transient={"update": secret}))
    assert result.result == secret
    # The ordered envelope is what the (fake) endorser built from header + result; no proposal payload.
    assert len(servicer.submitted[0].payload) < len(secret) + 10_000


def test_mvcc_conflict_is_retried_with_fresh_transactions(gateway):
    backend, servicer = gateway
    servicer.conflicts = 2
    result = backend.submit(_proposal("Conflict"))
    assert servicer.calls["Conflict"] == 3
    assert len(servicer.submitted) == 3
    assert result.transaction_id == list(servicer.status)[-1]
    assert len(set(servicer.status)) == 3  # each retry is a new transaction id
    assert backend.retried == 2


def test_mvcc_conflict_gives_up_after_the_bound(gateway):
    backend, servicer = gateway
    servicer.conflicts = 10
    backend.mvcc_retries = 2
    with pytest.raises(CommitError) as caught:
        backend.submit(_proposal("Conflict"))
    assert caught.value.code == "MVCC_READ_CONFLICT"
    assert servicer.calls["Conflict"] == 3


def test_other_invalid_codes_are_not_retried(gateway):
    backend, servicer = gateway
    with pytest.raises(CommitError) as caught:
        backend.submit(_proposal("Invalid"))
    assert caught.value.code == "ENDORSEMENT_POLICY_FAILURE"
    assert caught.value.transaction_id in servicer.status
    assert servicer.calls["Invalid"] == 1


@pytest.mark.parametrize("call", ["evaluate", "submit"])
def test_contract_refusal_is_typed_with_contract_message_and_details(gateway, call):
    backend, _ = gateway
    with pytest.raises(ContractRejected) as caught:
        getattr(backend, call)(_proposal("Refuse", b"[NOT_FOUND] round 3 does not exist"))
    error = caught.value
    assert isinstance(error, EndorseError)
    assert isinstance(error, contract_errors.NotFound)
    assert error.code == "NOT_FOUND"
    assert error.contract_message == "round 3 does not exist"
    assert len(error.transaction_id) == 64
    assert error.details == (
        "peer0.org1.example.com:7051 (Org1MSP): chaincode response 500, [NOT_FOUND] round 3 does not exist",
        "peer0.org2.example.com:9051 (Org2MSP): chaincode response 500, [NOT_FOUND] round 3 does not exist",
    )


def test_uncoded_endorsement_failure_is_a_plain_endorse_error(gateway):
    backend, _ = gateway
    with pytest.raises(EndorseError) as caught:
        backend.submit(_proposal("Refuse", b"panic: something odd"))
    assert not isinstance(caught.value, ContractRejected)
    assert caught.value.code == "ABORTED"
    assert "something odd" in str(caught.value)


def test_wrong_signer_is_refused(gateway, tmp_path: Path):
    backend, _ = gateway
    make_msp(tmp_path / "other")
    _, other_signer = load_msp_identity(tmp_path / "other", "Org1MSP")
    forged = FabricGatewayBackend(backend.identity, other_signer, endpoint=backend.endpoint)
    with pytest.raises(EndorseError) as caught:
        forged.evaluate(_proposal("Echo", b"x"))
    assert caught.value.code == "PERMISSION_DENIED"
    forged.close()


def test_unreachable_peer_fails_fast_with_deadline(tmp_path: Path):
    make_msp(tmp_path / "msp")
    identity, signer = load_msp_identity(tmp_path / "msp", "Org1MSP")
    backend = FabricGatewayBackend(identity, signer, endpoint="127.0.0.1:1", evaluate_timeout=0.5)
    with pytest.raises(EndorseError) as caught:
        backend.evaluate(_proposal("Echo", b"x"))
    assert caught.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    backend.close()


def test_an_unreachable_gateway_is_replaced_by_the_next_configured_one(gateway, tmp_path: Path):
    backend, _ = gateway
    identity, signer = load_msp_identity(tmp_path / "msp", "Org1MSP")
    # nothing listens on port 1
    failing_over = FabricGatewayBackend(identity, signer, endpoint="127.0.0.1:1", fallbacks=[backend.gateways.current])
    try:
        assert failing_over.evaluate(_proposal("Echo", b"x")) == b"x"
        assert failing_over.submit(_proposal("Echo", b"y")).result == b"y"
        assert failing_over.gateways.current == backend.gateways.current
        assert failing_over.gateways.failovers == 1  # it stays on the gateway that answered
    finally:
        failing_over.close()


def test_no_reachable_gateway_is_one_line_naming_them_and_what_to_do(tmp_path: Path):
    make_msp(tmp_path / "msp")
    identity, signer = load_msp_identity(tmp_path / "msp", "Org1MSP")
    backend = FabricGatewayBackend(
        identity, signer, endpoint="127.0.0.1:1", fallbacks=[GatewayEndpoint("127.0.0.1:2", mspid="Org2MSP")]
    )
    with pytest.raises(EndorseError) as caught:
        backend.evaluate(_proposal("Echo", b"x"))
    backend.close()
    line = str(caught.value).splitlines()[0]
    assert caught.value.code == "UNAVAILABLE"
    assert "127.0.0.1:1 (Org1MSP), 127.0.0.1:2 (Org2MSP)" in line and "make network-status" in line


def test_events_from_start_block_resume_and_close(gateway):
    backend, servicer = gateway
    servicer.events = [(5, "a", "E", b"1"), (6, "b", "E", b"2"), (6, "c", "E", b"3"), (7, "d", "E", b"4")]

    stream = backend.chaincode_events("mychannel", "fedledger", start_block=6)
    got = [next(stream) for _ in range(3)]
    assert [(e.block_number, e.transaction_id, e.payload) for e in got] == [
        (6, "b", b"2"),
        (6, "c", b"3"),
        (7, "d", b"4"),
    ]
    assert got[0].chaincode == "fedledger" and got[0].name == "E"
    assert stream.checkpoint == (7, "d")
    stream.close()
    assert list(stream) == []  # closed: iteration ends instead of blocking

    resumed = backend.chaincode_events("mychannel", "fedledger", start_block=6, after_transaction_id="b")
    assert [next(resumed).transaction_id for _ in range(2)] == ["c", "d"]
    resumed.close()


def test_backend_close_ends_blocked_event_readers(gateway):
    backend, _ = gateway
    stream = backend.chaincode_events("mychannel", "fedledger")  # only new events: blocks
    seen: list[object] = []
    reader = threading.Thread(target=lambda: seen.extend(stream))
    reader.start()
    backend.close()
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert seen == []
    with pytest.raises(GatewayError, match="closed"):
        backend.chaincode_events("mychannel", "fedledger")


def test_constructor_checks_parameters(tmp_path: Path):
    make_msp(tmp_path / "msp")
    identity, signer = load_msp_identity(tmp_path / "msp", "Org1MSP")
    with pytest.raises(ValueError, match="'endorse_timeout' parameter must be > 0"):
        FabricGatewayBackend(identity, signer, endpoint="127.0.0.1:1", endorse_timeout=0)
    with pytest.raises(ValueError, match="'mvcc_retries' parameter must be >= 0"):
        FabricGatewayBackend(identity, signer, endpoint="127.0.0.1:1", mvcc_retries=-1)


def test_each_step_raises_its_own_error_type(gateway):
    backend, _ = gateway
    endorsed = backend.endorse(_proposal("Echo", b"x"))
    assert endorsed.result == b"x"
    broken = EndorsedTransaction(endorsed.channel, endorsed.transaction_id, b"", common_pb2.Envelope(payload=b"\xff"))
    cases = [
        (lambda: backend.endorse(_proposal("Nope")), EndorseError),
        (lambda: backend.submit_endorsed(broken), SubmitError),
        (lambda: backend.commit_status("mychannel", "not-a-transaction"), CommitStatusError),
    ]
    for call, expected in cases:
        with pytest.raises(GatewayError) as caught:
            call()
        assert type(caught.value) is expected
        assert caught.value.code != "OK"
    backend.submit_endorsed(endorsed)
    assert backend.commit_status("mychannel", endorsed.transaction_id)[0] == "VALID"

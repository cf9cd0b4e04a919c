"""Regression tests, against the real peer, for each fix in fedledger.chaincode.fabric.compat."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fabric_protos.peer import proposal_response_pb2

from fedledger.identity import load_msp_identity
from fedledger.sdk.backend import Proposal
from fedledger.sdk.errors import CommitError
from fedledger.sdk.fabric import FabricGatewayBackend

from . import endorser
from .fabric_cli import CHANNEL, CliError, FabricCli

pytestmark = pytest.mark.fabric


def _identity(cli: FabricCli, org: int = 1, user: str = "User1") -> endorser.Identity:
    o = cli.org(org)
    return endorser.Identity.from_msp_dir(o["mspid"], o["users"][user]["msp_dir"])


def _endorse(cli: FabricCli, org: int, proposal) -> proposal_response_pb2.ProposalResponse:
    peer = cli.org(org)["peer"]
    return endorser.process(peer["endpoint"], peer["tls_root_cert"], peer["tls_host_override"], proposal)


# Fix 1: importing the library reconfigured the root logger.


def test_importing_compat_leaves_the_root_logger_alone() -> None:
    probe = "import logging, {mod}; r = logging.getLogger(); print(r.level, len(r.handlers))"
    raw = subprocess.run(
        [sys.executable, "-c", probe.format(mod="fabric_chaincode_python.fabric_shim.handler")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert raw.stdout.split() == [str(10), "1"], "the library itself no longer sets DEBUG: compat fix 1 can go"
    fixed = subprocess.run(
        [sys.executable, "-c", probe.format(mod="fedledger.chaincode.fabric.compat")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert fixed.stdout.split() == [str(30), "0"]


def test_the_real_chaincode_server_logs_no_library_debug_chatter(fabric_network: FabricCli, compat_cc: str) -> None:
    fabric_network.invoke(compat_cc, ["Put", "log-probe", "x"])
    log = (fabric_network.run / "logs" / f"ccserver-{compat_cc}.org1.log").read_text()
    assert " DEBUG " not in log
    assert "Look out" not in log and "->>>>" not in log


# Fix 2: set_event payloads never reached the peer.


def test_chaincode_event_is_in_the_committed_transaction(fabric_network: FabricCli, compat_cc: str) -> None:
    payload = 'round 7 \u2713 {"k": 1}'
    result = fabric_network.invoke(compat_cc, ["Emit", "RoundOpened", payload])
    assert result.status == "VALID"
    tx = fabric_network.committed_tx(result.tx_id, compat_cc)
    assert tx.event_name == "RoundOpened"
    assert tx.event_payload == payload.encode()
    assert tx.writes == {f"emitted/{result.tx_id}": b"RoundOpened"}


def test_a_second_set_event_replaces_the_first(fabric_network: FabricCli, compat_cc: str) -> None:
    result = fabric_network.invoke(compat_cc, ["Emit", "First", "1", "Second", "2"])
    tx = fabric_network.committed_tx(result.tx_id, compat_cc)
    assert (tx.event_name, tx.event_payload) == ("Second", b"2")


def test_no_event_when_the_transaction_sets_none(fabric_network: FabricCli, compat_cc: str) -> None:
    result = fabric_network.invoke(compat_cc, ["Put", "no-event", "x"])
    tx = fabric_network.committed_tx(result.tx_id, compat_cc)
    assert (tx.event_name, tx.event_payload) == ("", b"")


# Fix 3: concurrent transactions on one stream failed (GRPC_CALL_ERROR_TOO_MANY_OPERATIONS).


def test_concurrent_transactions_on_one_stream_all_commit(fabric_network: FabricCli, compat_cc: str) -> None:
    n = 12
    started = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        results = list(
            pool.map(lambda i: fabric_network.invoke(compat_cc, ["Slow", f"concurrent/{i}", "400"]), range(n))
        )
    elapsed = time.monotonic() - started
    assert [r.status for r in results] == ["VALID"] * n
    for i in range(n):
        assert fabric_network.query(compat_cc, ["Get", f"concurrent/{i}"]) == b"done"
    peaks = [int(fabric_network.query(compat_cc, ["PeakConcurrency"], org=org)) for org in (1, 2)]
    assert max(peaks) > 1, f"transactions never overlapped on a stream (peaks {peaks})"
    assert elapsed < n * 0.4, f"{n} transactions of 0.4 s took {elapsed:.1f}s: they ran one at a time"


# Fix 4: get_transient returned None.


def test_transient_data_reaches_the_chaincode_and_stays_out_of_the_block(
    fabric_network: FabricCli, compat_cc: str
) -> None:
    secret = os.urandom(48 * 1024)
    digest = {"update": {"sha256": hashlib.sha256(secret).hexdigest(), "size": len(secret)}}
    assert json.loads(fabric_network.query(compat_cc, ["Transient"], transient={"update": secret})) == digest

    result = fabric_network.invoke(compat_cc, ["Transient", "t1"], transient={"update": secret})
    assert result.status == "VALID"
    tx = fabric_network.committed_tx(result.tx_id, compat_cc)
    written = tx.writes["transient/t1"]
    assert written is not None
    assert json.loads(written) == digest
    raw = fabric_network.query("qscc", ["GetTransactionByID", CHANNEL, result.tx_id], raw=True)
    assert secret[:64] not in raw, "transient bytes leaked into the committed transaction"


def test_transient_of_50_mb_goes_through_peer_and_chaincode_server(fabric_network: FabricCli, compat_cc: str) -> None:
    update = os.urandom(50 * 1024 * 1024 + 123)
    _, proposal = endorser.signed_proposal(
        _identity(fabric_network), CHANNEL, compat_cc, ["Transient"], {"update": update}
    )
    for org in (1, 2):
        response = _endorse(fabric_network, org, proposal)
        assert response.response.status == 200, response.response.message
        assert json.loads(response.response.payload) == {
            "update": {"sha256": hashlib.sha256(update).hexdigest(), "size": len(update)}
        }


# Fix 5: a peer ERROR reply to a ledger call came back as if it were the value.


def test_a_peer_error_on_a_ledger_call_raises(fabric_network: FabricCli, compat_cc: str) -> None:
    answer = json.loads(fabric_network.query(compat_cc, ["PeerErrorRaised", "k"]))
    assert answer["raised"] == "PeerError"
    assert "no_such_collection could not be found" in answer["message"]


# Contract errors travel as "[CODE] message" with status 500 and write nothing.


def test_contract_error_is_the_endorsement_message_and_writes_nothing(
    fabric_network: FabricCli, compat_cc: str
) -> None:
    with pytest.raises(CliError) as query_error:
        fabric_network.query(compat_cc, ["Fail", "weights are not finite"])
    assert 'status:500 message:"[INVALID_ARGUMENT] weights are not finite"' in query_error.value.output
    with pytest.raises(CliError) as invoke_error:
        fabric_network.invoke(compat_cc, ["Fail", "weights are not finite"])
    assert "[INVALID_ARGUMENT] weights are not finite" in invoke_error.value.output
    with pytest.raises(CliError, match=r"\[NOT_FOUND\] never-written does not exist"):
        fabric_network.query(compat_cc, ["Get", "never-written"])


def test_an_unexpected_exception_is_reported_as_internal(fabric_network: FabricCli, compat_cc: str) -> None:
    with pytest.raises(CliError, match=r"\[INTERNAL\] RuntimeError: unexpected bug"):
        fabric_network.query(compat_cc, ["Crash"])


# Determinism: both orgs compute the same read/write set from the same update bytes.


def test_submit_update_like_tx_endorsed_by_both_orgs_commits_valid(fabric_network: FabricCli, compat_cc: str) -> None:
    rng = np.random.default_rng(3)
    update = rng.normal(0, 0.02, 16_000).astype(np.float32).tobytes()  # 64 KB: fits the CLI's argv
    result = fabric_network.invoke(compat_cc, ["SubmitUpdateLike", "round-1"], transient={"update": update})
    assert result.status == "VALID"
    tx = fabric_network.committed_tx(result.tx_id, compat_cc)
    assert tx.endorsers == ["Org1MSP", "Org2MSP"]
    (written,) = [v for k, v in tx.writes.items() if k.startswith("\x00update\x00round-1\x00")]
    assert written is not None
    record = json.loads(written)
    assert record["sha256"] == hashlib.sha256(update).hexdigest()
    assert record["features"]["l2"] == pytest.approx(float(np.linalg.norm(np.frombuffer(update, np.float32))))
    assert tx.event_name == "UpdateSubmitted"


def test_both_peers_return_byte_identical_endorsements_for_a_large_update(
    fabric_network: FabricCli, compat_cc: str
) -> None:
    update = np.random.default_rng(11).normal(0, 0.02, 2_000_000).astype(np.float32).tobytes()  # 8 MB
    _, proposal = endorser.signed_proposal(
        _identity(fabric_network), CHANNEL, compat_cc, ["SubmitUpdateLike", "round-2"], {"update": update}
    )
    responses = [_endorse(fabric_network, org, proposal) for org in (1, 2)]
    assert [r.response.status for r in responses] == [200, 200]
    # The signed ProposalResponsePayload holds the rwset hash basis, the response and the event.
    assert responses[0].payload == responses[1].payload
    assert responses[0].endorsement.endorser != responses[1].endorsement.endorser


# Fix 7: state-based endorsement calls were interface stubs (no key, nothing sent, None returned).


def test_the_library_stub_has_no_state_based_endorsement() -> None:
    from fedledger.chaincode.fabric.compat import ChaincodeStub

    for name in ("set_state_validation_parameter", "get_state_validation_parameter"):
        method = getattr(ChaincodeStub, name)
        assert list(inspect.signature(method).parameters) == ["self"], f"the library implements {name}: fix 7 can go"
        assert method(None) is None


@pytest.fixture(scope="module")
def org2_gateway(fabric_network: FabricCli) -> Iterator[FabricGatewayBackend]:
    """An Org2 user connected to Org2's gateway peer only."""
    org = fabric_network.org(2)
    identity, signer = load_msp_identity(org["users"]["User1"]["msp_dir"], org["mspid"])
    backend = FabricGatewayBackend(
        identity,
        signer,
        endpoint=org["peer"]["endpoint"],
        tls_root_cert=org["peer"]["tls_root_cert"],
        server_name_override=org["peer"]["tls_host_override"],
    )
    yield backend
    backend.close()


def _org2_only_put(backend: FabricGatewayBackend, compat_cc: str, key: str, value: str):
    proposal = Proposal(
        CHANNEL, compat_cc, "Put", [key.encode(), value.encode()], {"share": b"Org2's secret"}, ("Org2MSP",)
    )
    return backend.submit(proposal)


def test_a_key_of_org2_is_written_with_org2s_endorsement_alone(
    fabric_network: FabricCli, compat_cc: str, org2_gateway: FabricGatewayBackend
) -> None:
    key = f"sbe-{time.time_ns()}"
    created = fabric_network.invoke(compat_cc, ["PutWithEndorsers", key, "s0", "Org2MSP"])  # chaincode policy: both
    assert created.status == "VALID"
    assert json.loads(fabric_network.query(compat_cc, ["KeyEndorsers", key])) == {"endorsers": ["Org2MSP"]}

    result = _org2_only_put(org2_gateway, compat_cc, key, "s1")
    assert fabric_network.committed_tx(result.transaction_id, compat_cc).endorsers == ["Org2MSP"]
    assert fabric_network.query(compat_cc, ["Get", key]) == b"s1"
    assert json.loads(fabric_network.query(compat_cc, ["KeyEndorsers", key], org=2)) == {"endorsers": ["Org2MSP"]}


def test_a_key_without_endorsers_still_needs_the_chaincode_policy(
    fabric_network: FabricCli, compat_cc: str, org2_gateway: FabricGatewayBackend
) -> None:
    key = f"plain-{time.time_ns()}"
    fabric_network.invoke(compat_cc, ["Put", key, "p0"])
    assert json.loads(fabric_network.query(compat_cc, ["KeyEndorsers", key])) == {"endorsers": None}
    with pytest.raises(CommitError) as invalid:
        _org2_only_put(org2_gateway, compat_cc, key, "p1")
    assert invalid.value.code == "ENDORSEMENT_POLICY_FAILURE"
    assert fabric_network.query(compat_cc, ["Get", key]) == b"p0"


def test_a_write_of_org2s_key_endorsed_by_org1_alone_is_invalid(fabric_network: FabricCli, compat_cc: str) -> None:
    key = f"sbe-{time.time_ns()}"
    fabric_network.invoke(compat_cc, ["PutWithEndorsers", key, "s0", "Org2MSP"])
    for args in (["Put", key, "forged"], ["SetEndorsers", key, "Org1MSP"], ["Delete", key]):
        assert fabric_network.invoke(compat_cc, args, org=1, peers=(1,)).status == "ENDORSEMENT_POLICY_FAILURE"
    assert fabric_network.query(compat_cc, ["Get", key]) == b"s0"
    assert json.loads(fabric_network.query(compat_cc, ["KeyEndorsers", key])) == {"endorsers": ["Org2MSP"]}


def test_clearing_a_keys_endorsers_restores_the_chaincode_policy(fabric_network: FabricCli, compat_cc: str) -> None:
    key = f"sbe-{time.time_ns()}"
    fabric_network.invoke(compat_cc, ["PutWithEndorsers", key, "s0", "Org1MSP", "Org2MSP"])
    assert json.loads(fabric_network.query(compat_cc, ["KeyEndorsers", key])) == {"endorsers": ["Org1MSP", "Org2MSP"]}
    assert fabric_network.invoke(compat_cc, ["SetEndorsers", key], org=2, peers=(2,)).status == "VALID"
    assert json.loads(fabric_network.query(compat_cc, ["KeyEndorsers", key])) == {"endorsers": None}
    assert fabric_network.invoke(compat_cc, ["Put", key, "x"], org=2, peers=(2,)).status == "ENDORSEMENT_POLICY_FAILURE"

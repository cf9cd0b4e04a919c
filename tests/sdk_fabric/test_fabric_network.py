"""The Gateway backend against the real native Fabric network (``make network-up``).

These tests share the network with the rest of the suite, so they only add state that cannot
disturb other tests (fresh participants with unique names, an idempotent InitConsortium) and use
evaluate wherever a read is enough.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from safetensors.numpy import save as save_safetensors

from fedledger.chaincode import errors as contract_errors
from fedledger.identity import CURVE_ORDERS, load_msp_identity
from fedledger.sdk.backend import Proposal
from fedledger.sdk.errors import CommitError, ContractRejected, EndorseError
from fedledger.sdk.fabric import FabricGatewayBackend, NetworkProfile

from .certs import issue_client_identity

pytestmark = [pytest.mark.fabric, pytest.mark.timeout(900)]

logger = logging.getLogger(__name__)
SCHEMA = hashlib.sha256(b"fedledger sdk_fabric tests").hexdigest()
RUN_ID = uuid.uuid4().hex[:8]


def _proposal(profile: NetworkProfile, function: str, *args: str, **kwargs) -> Proposal:
    return Proposal(profile.channel, profile.chaincode, function, [a.encode() for a in args], **kwargs)


@pytest.fixture(scope="module")
def admin(fabric_profile: NetworkProfile):
    backend = fabric_profile.connect("Org1", user="Admin")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def user(fabric_profile: NetworkProfile):
    backend = fabric_profile.connect("Org1", user="User1")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def member_org(fabric_profile: NetworkProfile, admin: FabricGatewayBackend):
    """Initialises the consortium if nobody did yet, and returns an org that may register."""
    rules_patch = json.dumps({"member_msps": sorted(o.mspid for o in fabric_profile.orgs.values())})
    with contextlib.suppress(contract_errors.AlreadyExists):
        admin.submit(_proposal(fabric_profile, "InitConsortium", rules_patch))
    rules = json.loads(admin.evaluate(_proposal(fabric_profile, "GetRules")))
    assert "Org1MSP" in rules["member_msps"]
    return fabric_profile.org("Org1")


def _ca_dir(profile: NetworkProfile, org: str) -> Path:
    # users/<u>/msp -> the org folder -> ca/ (cryptogen keeps the CA key there)
    return profile.org(org).msp_dir("Admin").parents[2] / "ca"


def _fresh_backend(profile: NetworkProfile, org: str, tmp: Path, name: str, **options) -> FabricGatewayBackend:
    msp = issue_client_identity(_ca_dir(profile, org), tmp, f"{name}-{RUN_ID}")
    return profile.connect(org, msp_dir=msp, **options)


def _enrol(profile: NetworkProfile, backend: FabricGatewayBackend) -> None:
    """The backend's identity enrolled as a trainer by its organisation's admin."""
    mspid, _, name = json.loads(backend.evaluate(_proposal(profile, "WhoAmI")))["id"].partition(":")
    admin = profile.connect(mspid.removesuffix("MSP"), user="Admin")
    try:
        enrolled = admin.submit(_proposal(profile, "EnrolTrainer", name, "100", SCHEMA))
        # the next proposal is endorsed by every org: a peer still a block behind would not know the enrolment
        admin.wait_for_block(profile.channel, enrolled.block_number, [o.mspid for o in profile.orgs.values()])
    finally:
        admin.close()


def _register(profile: NetworkProfile, backend: FabricGatewayBackend, *, enrol: bool = True, **kwargs):
    """The write a fresh identity can make: its organisation's admin enrols it (unless ``enrol`` is False:
    done before), then it registers as a trainer (``kwargs`` shape that proposal, e.g. ``endorsing_orgs``)."""
    if enrol:
        _enrol(profile, backend)
    return backend.submit(_proposal(profile, "RegisterParticipant", "trainer", **kwargs))


# --- round trips ----------------------------------------------------------------------------


def test_evaluate_round_trip(fabric_profile: NetworkProfile, user: FabricGatewayBackend):
    answer = json.loads(user.evaluate(_proposal(fabric_profile, "WhoAmI")))
    assert answer["mspid"] == "Org1MSP"
    assert answer["id"] == "Org1MSP:User1@org1.example.com"
    assert answer["admin"] is False


def test_submit_round_trip_committed_and_readable(fabric_profile, member_org, tmp_path):
    backend = _fresh_backend(fabric_profile, member_org.name, tmp_path, "roundtrip")
    started = time.perf_counter()
    result = _register(fabric_profile, backend)
    elapsed = time.perf_counter() - started
    participant = json.loads(result.result)
    logger.info("submit round trip %.0f ms, block %d", elapsed * 1000, result.block_number)
    assert participant["id"] == f"{member_org.mspid}:roundtrip-{RUN_ID}"
    assert len(result.transaction_id) == 64 and result.block_number > 0
    stored = json.loads(backend.evaluate(_proposal(fabric_profile, "GetParticipant", participant["id"])))
    assert stored == participant
    backend.close()


def test_transient_data_reaches_the_chaincode(fabric_profile, admin, member_org):
    # Evaluate only: RegisterGenesisModel hashes the transient bytes itself and nothing is committed.
    model = save_safetensors({"lora_A": np.arange(64, dtype=np.float32).reshape(8, 8)})
    try:
        answer = admin.evaluate(
            _proposal(fabric_profile, "RegisterGenesisModel", "sdk-test", transient={"model": model})
        )
    except contract_errors.AlreadyExists:
        pytest.skip("a genesis model is already registered on this network; the transient check needs none")
    assert json.loads(answer)["hash"] == hashlib.sha256(model).hexdigest()
    with pytest.raises(contract_errors.InvalidArgument, match="transient"):
        admin.evaluate(_proposal(fabric_profile, "RegisterGenesisModel", "sdk-test"))


def test_transient_data_of_50_megabytes(fabric_profile, admin, member_org):
    # 50 MB + a little: above every gRPC default (4 MiB) on client, gateway, peer and chaincode hops.
    model = save_safetensors({"w": np.ones(50 * 1024 * 1024 // 4 + 1024, dtype=np.float32)})
    assert len(model) > 50 * 1024 * 1024
    started = time.perf_counter()
    try:
        answer = admin.evaluate(_proposal(fabric_profile, "RegisterGenesisModel", "big", transient={"model": model}))
    except contract_errors.AlreadyExists:
        pytest.skip("a genesis model is already registered on this network")
    logger.info("50 MB transient evaluate: %.2f s", time.perf_counter() - started)
    assert json.loads(answer)["size"] == len(model)


def test_50_megabytes_endorsed_by_both_orgs_without_submitting(fabric_profile, admin, member_org):
    # Endorse sends the proposal to every endorsing org: client → gateway peer → the other org's peer →
    # each chaincode server. Both chaincodes hash the bytes and agree; the transaction is never ordered.
    if len(fabric_profile.orgs) < 2:
        pytest.skip("needs two organisations")
    model = save_safetensors({"w": np.full(50 * 1024 * 1024 // 4 + 1024, 0.5, dtype=np.float32)})
    both = sorted(o.mspid for o in fabric_profile.orgs.values())[:2]
    started = time.perf_counter()
    try:
        endorsed = admin.endorse(
            _proposal(fabric_profile, "RegisterGenesisModel", "big", transient={"model": model}, endorsing_orgs=both)
        )
    except contract_errors.AlreadyExists:
        pytest.skip("a genesis model is already registered on this network")
    print(f"\n{len(model) / 1e6:.1f} MB transient endorsed by {both}: {time.perf_counter() - started:.2f} s")
    assert json.loads(endorsed.result)["hash"] == hashlib.sha256(model).hexdigest()
    assert len(endorsed.envelope.payload) < 1024 * 1024, "the bytes are not in the transaction"


# --- errors -----------------------------------------------------------------------------------


def test_contract_error_is_typed_with_the_contract_message(fabric_profile, user):
    missing = f"Org1MSP:nobody-{RUN_ID}"
    for step in (user.evaluate, user.submit):
        with pytest.raises(contract_errors.NotFound) as caught:
            step(_proposal(fabric_profile, "GetParticipant", missing))
        error = caught.value
        assert isinstance(error, EndorseError) and isinstance(error, ContractRejected)
        assert error.code == "NOT_FOUND"
        assert missing in error.contract_message
        assert len(error.transaction_id) == 64
        assert error.details, "the endorser's address, MSP ID and message are reported"
        assert any("Org1MSP" in detail or "Org2MSP" in detail for detail in error.details)
        logger.info("%s -> %s", step.__name__, error)


def test_forged_and_high_s_signatures_are_rejected_by_the_peer(fabric_profile, fabric_network_dir, user):
    identity = user.identity
    _, honest = load_msp_identity(fabric_profile.org("Org1").msp_dir("User1"), "Org1MSP")
    _, other_key = load_msp_identity(fabric_profile.org("Org1").msp_dir("Admin"), "Org1MSP")
    order = CURVE_ORDERS["secp256r1"]

    def high_s(message: bytes) -> bytes:
        r, s = decode_dss_signature(honest(message))
        return encode_dss_signature(r, order - s)  # same signature, non-canonical form

    org = fabric_profile.org("Org1")
    rejected: dict[str, list[str]] = {"forged": [], "high-S": []}
    for label, signer in (("forged", other_key), ("high-S", high_s)):
        backend = FabricGatewayBackend(
            identity,
            signer,
            endpoint=org.endpoint,
            tls_root_cert=org.tls_root_cert,
            server_name_override=org.server_name_override,
        )
        for step in (backend.evaluate, backend.submit):
            with pytest.raises(EndorseError) as caught:
                step(_proposal(fabric_profile, "WhoAmI"))
            assert not isinstance(caught.value, ContractRejected)
            assert "access denied" in str(caught.value)
            rejected[label].append(caught.value.transaction_id)
            logger.info("%s signature, %s -> %s", label, step.__name__, caught.value)
        backend.close()
    # The gateway only says "access denied"; the peer's log names the reason for each transaction.
    peer_log = fabric_network_dir / "logs" / "peer0.org1.log"
    if peer_log.is_file():
        reasons = {"forged": "The signature is invalid", "high-S": "Invalid S. Must be smaller than half the order"}
        lines = peer_log.read_text(errors="replace").splitlines()
        for label, tx_ids in rejected.items():
            for tx_id in tx_ids:
                found = [line for line in lines if f"txID={tx_id[:8]}" in line and "signature over the" in line]
                assert any(reasons[label] in line for line in found), (label, tx_id, found)
    # The honest signer over the same identity works, so the rejections were about the signatures.
    assert json.loads(user.evaluate(_proposal(fabric_profile, "WhoAmI")))["mspid"] == "Org1MSP"


def test_deadline_is_enforced(fabric_profile):
    org = fabric_profile.org("Org1")
    backend = fabric_profile.connect("Org1", evaluate_timeout=0.0005)
    with pytest.raises(EndorseError) as caught:
        backend.evaluate(_proposal(fabric_profile, "WhoAmI"))
    assert caught.value.code == "DEADLINE_EXCEEDED", org.endpoint
    backend.close()


def test_single_org_endorsement_fails_the_majority_policy(fabric_profile, member_org, tmp_path):
    if len(fabric_profile.orgs) < 2:
        pytest.skip("needs two organisations")
    backend = _fresh_backend(fabric_profile, member_org.name, tmp_path, "alone")
    with pytest.raises(CommitError) as caught:
        _register(fabric_profile, backend, endorsing_orgs=[member_org.mspid])
    assert caught.value.code == "ENDORSEMENT_POLICY_FAILURE"
    with pytest.raises(contract_errors.NotFound):  # nothing was written
        backend.evaluate(_proposal(fabric_profile, "GetParticipant", f"{member_org.mspid}:alone-{RUN_ID}"))
    both = sorted(o.mspid for o in fabric_profile.orgs.values())[:2]
    assert _register(fabric_profile, backend, endorsing_orgs=both).block_number > 0
    backend.close()


# --- events -----------------------------------------------------------------------------------


def test_events_stream_and_resume_from_a_block(fabric_profile, member_org, tmp_path):
    results = []
    for i in range(3):
        backend = _fresh_backend(fabric_profile, member_org.name, tmp_path, f"events{i}")
        results.append(_register(fabric_profile, backend))
        backend.close()
    ours = {r.transaction_id for r in results}
    reader = fabric_profile.connect("Org2" if len(fabric_profile.orgs) > 1 else "Org1")

    def collect(stream, count):
        seen = []
        for event in stream:
            if event.transaction_id in ours:
                seen.append(event)
                if len(seen) == count:
                    break
        stream.close()
        return seen

    first = results[0]
    events = collect(
        reader.chaincode_events(fabric_profile.channel, fabric_profile.chaincode, start_block=first.block_number), 3
    )
    assert [e.transaction_id for e in events] == [r.transaction_id for r in results]
    assert [e.block_number for e in events] == [r.block_number for r in results]
    assert {e.name for e in events} == {"ParticipantRegistered"}
    assert json.loads(events[0].payload)["participant"] == f"{member_org.mspid}:events0-{RUN_ID}"

    resumed = collect(
        reader.chaincode_events(
            fabric_profile.channel,
            fabric_profile.chaincode,
            start_block=first.block_number,
            after_transaction_id=first.transaction_id,
        ),
        2,
    )
    assert [e.transaction_id for e in resumed] == [r.transaction_id for r in results[1:]]

    # Only new events: the stream is open before the transaction is submitted.
    live = reader.chaincode_events(fabric_profile.channel, fabric_profile.chaincode)
    backend = _fresh_backend(fabric_profile, member_org.name, tmp_path, "live")
    got: list = []
    thread = threading.Thread(target=lambda: got.extend(e for e in live if e.name == "ParticipantRegistered"))
    thread.start()
    submitted = _register(fabric_profile, backend)
    deadline = time.monotonic() + 30
    while not any(e.transaction_id == submitted.transaction_id for e in got) and time.monotonic() < deadline:
        time.sleep(0.05)
    live.close()
    thread.join(timeout=10)
    assert any(e.transaction_id == submitted.transaction_id for e in got)
    backend.close()
    reader.close()


# --- concurrency ------------------------------------------------------------------------------


def test_conflicting_submissions_are_retried_cleanly(fabric_profile, member_org, tmp_path):
    """Five concurrent registrations of one identity: exactly one wins, the rest are refused.

    They read and write the same key, so those ordered in the same block commit
    MVCC_READ_CONFLICT; the backend re-proposes them, and the contract then refuses them as
    AlreadyExists. Nothing is lost and nothing is written twice.
    """
    msp = issue_client_identity(_ca_dir(fabric_profile, member_org.name), tmp_path, f"twice-{RUN_ID}")
    backend = fabric_profile.connect(member_org.name, msp_dir=msp, mvcc_retries=5)
    barrier = threading.Barrier(5)
    _enrol(fabric_profile, backend)  # once, by its admin: the race is the identity's own registration

    def attempt(_: int) -> str:
        barrier.wait()
        try:
            _register(fabric_profile, backend, enrol=False)
        except contract_errors.AlreadyExists:
            return "already-exists"
        return "committed"

    with ThreadPoolExecutor(5) as pool:
        outcomes = Counter(pool.map(attempt, range(5)))
    logger.info("outcomes %s, MVCC retries %d", dict(outcomes), backend.retried)
    print(f"\nsame-key race: {dict(outcomes)}, MVCC retries: {backend.retried}")
    assert outcomes == {"committed": 1, "already-exists": 4}
    backend.close()


def test_200_submissions_from_20_concurrent_clients(fabric_profile, member_org, tmp_path):
    clients, per_client = 20, 10
    ca = _ca_dir(fabric_profile, member_org.name)
    prefix = f"load-{RUN_ID}"
    msps = [
        [issue_client_identity(ca, tmp_path, f"{prefix}-{c:02d}-{i:02d}") for i in range(per_client)]
        for c in range(clients)
    ]
    barrier = threading.Barrier(clients)
    retries = Counter()
    latencies: list[float] = []
    lock = threading.Lock()

    def client(index: int) -> list[tuple[str, int]]:
        committed = []
        backends = [fabric_profile.connect(member_org.name, msp_dir=m) for m in msps[index]]
        barrier.wait()
        for backend in backends:
            started = time.perf_counter()
            result = _register(fabric_profile, backend)
            with lock:
                latencies.append(time.perf_counter() - started)
                retries[index] += backend.retried
            committed.append((result.transaction_id, result.block_number))
            backend.close()
        return committed

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        committed = [tx for txs in pool.map(client, range(clients)) for tx in txs]
    wall = time.perf_counter() - started

    # Count on the ledger: every registration is there, once.
    admin = fabric_profile.connect(member_org.name, user="Admin", evaluate_timeout=60)
    participants = json.loads(admin.evaluate(_proposal(fabric_profile, "ListParticipants")))
    admin.close()
    on_ledger = [p for p in participants if p["common_name"].startswith(prefix)]
    latencies.sort()
    summary = (
        f"\n200 submissions / 20 clients: {len(committed)} committed VALID in {wall:.1f} s "
        f"({len(committed) / wall:.1f} tx/s), MVCC retries {sum(retries.values())}, "
        f"blocks {len({b for _, b in committed})}, p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms, on ledger {len(on_ledger)}"
    )
    print(summary)
    logger.info(summary)
    assert len(committed) == clients * per_client
    assert len({tx for tx, _ in committed}) == clients * per_client
    assert len(on_ledger) == clients * per_client
    assert {p["mspid"] for p in on_ledger} == {member_org.mspid}

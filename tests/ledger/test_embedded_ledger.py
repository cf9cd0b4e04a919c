"""The embedded ledger: signatures, identities, atomicity, hash chain, tamper detection."""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from fedledger.chaincode.embedded.ledger import DB_NAME, EmbeddedLedger, LedgerError, sha256_hex
from fedledger.chaincode.embedded.proposal import SignedProposal
from fedledger.chaincode.embedded.verify import verify_ledger
from fedledger.chaincode.errors import ContractError
from fedledger.identity import ecdsa_signer, to_low_s
from fedledger.sdk.embedded import shared_ledger

from ..aggregates import commit_round
from ..support import common_name, dp, only_on, ready_round, world

# The embedded ledger itself (its blocks, signatures and sqlite state): the Fabric counterparts are the
# peer's own checks, tested in tests/fabric_network and tests/sdk_fabric.
pytestmark = only_on("embedded")

ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.fixture
def busy_ledger(consortium, updates):
    """A ledger with a few rounds' worth of transactions."""
    aggregator, trainers, _ = ready_round(consortium, trainers=3)
    for trainer in trainers:
        trainer.submit_update(1, updates.bytes(), samples=10, privacy=dp(1.0), train_loss=0.3)
    aggregator.close_round(1)
    aggregator.finalize_round(1)
    return consortium, aggregator


def _signed(client, function="WhoAmI", args=(), transient=None) -> SignedProposal:
    backend = client.contract._backend
    return backend._sign(client.contract._proposal(function, args, transient))


def test_verify_accepts_an_untouched_ledger(busy_ledger):
    consortium, _ = busy_ledger
    report = verify_ledger(consortium.embedded.ledger_dir)
    assert report.ok, report
    assert report.height == shared_ledger(consortium.embedded.ledger_dir).height()
    assert report.transactions == report.height - 1


@pytest.mark.parametrize("target", [3, 7])
def test_altering_a_stored_block_is_reported_at_that_block(busy_ledger, target):
    consortium, _ = busy_ledger
    path = consortium.embedded.ledger_dir / DB_NAME
    with sqlite3.connect(path) as db:
        data = json.loads(db.execute("SELECT data FROM blocks WHERE number = ?", (target,)).fetchone()[0])
        tx = data["transactions"][0]
        tx["writes"][0][1] = tx["writes"][0][1][:-4] + "AAA="  # change one written value
        db.execute("UPDATE blocks SET data = ? WHERE number = ?", (json.dumps(data).encode(), target))
    report = verify_ledger(consortium.embedded.ledger_dir)
    assert not report.ok
    assert report.first_bad_block == target
    assert "data hash" in report.problem


def test_rehashing_a_tampered_block_breaks_the_chain_or_the_orderer_signature(busy_ledger):
    consortium, _ = busy_ledger
    path = consortium.embedded.ledger_dir / DB_NAME
    with sqlite3.connect(path) as db:
        header, data = db.execute("SELECT header, data FROM blocks WHERE number = 4").fetchone()
        data = bytes(data).replace(b'"validation":"VALID"', b'"validation":"VALID" ')
        fields = json.loads(header)
        fields["data_hash"] = sha256_hex(data)
        db.execute("UPDATE blocks SET header = ?, data = ? WHERE number = 4", (json.dumps(fields).encode(), data))
    report = verify_ledger(consortium.embedded.ledger_dir)
    assert (report.ok, report.first_bad_block) == (False, 4)
    assert "orderer signature" in report.problem


def test_editing_world_state_is_detected(busy_ledger):
    consortium, _ = busy_ledger
    with sqlite3.connect(consortium.embedded.ledger_dir / DB_NAME) as db:
        db.execute("UPDATE state SET value = CAST('{}' AS BLOB) WHERE rowid = (SELECT MIN(rowid) FROM state)")
    report = verify_ledger(consortium.embedded.ledger_dir)
    assert not report.ok and "world state differs" in report.problem


def test_forged_signature_is_refused(consortium):
    client = consortium.admin()
    ledger = shared_ledger(consortium.embedded.ledger_dir)
    signed = _signed(client, "InitConsortium", ("{}",))
    forged = SignedProposal(signed.header, ecdsa_signer(ec.generate_private_key(ec.SECP256R1()))(signed.header), {})
    height = ledger.height()
    with pytest.raises(LedgerError, match="signature does not verify") as info:
        ledger.submit(forged)
    assert info.value.code == "BAD_SIG" and ledger.height() == height


def test_high_s_signature_is_refused(consortium):
    client = consortium.admin()
    ledger = shared_ledger(consortium.embedded.ledger_dir)
    signed = _signed(client, "InitConsortium", ("{}",))
    r, s = decode_dss_signature(signed.signature)
    high = encode_dss_signature(r, ORDER - s if s < ORDER // 2 else s)
    assert to_low_s(high, ORDER) == signed.signature  # same signature, malleated
    with pytest.raises(LedgerError, match="signature"):
        ledger.submit(SignedProposal(signed.header, high, {}))
    assert ledger.height() == 1


def test_altered_header_or_transient_is_refused(consortium):
    client = consortium.admin()
    ledger = shared_ledger(consortium.embedded.ledger_dir)
    signed = _signed(client, "InitConsortium", ("{}",), {"note": b"hello"})
    tampered = SignedProposal(signed.header.replace(b"InitConsortium", b"UpdateRules!!"), signed.signature, {})
    with pytest.raises(LedgerError):
        ledger.submit(tampered)
    with pytest.raises(LedgerError, match="transient data does not match") as info:
        ledger.submit(SignedProposal(signed.header, signed.signature, {"note": b"HELLO"}))
    assert info.value.code == "BAD_TRANSIENT"
    assert ledger.height() == 1


def test_a_failed_transaction_leaves_no_block_and_no_writes(busy_ledger, updates):
    consortium, aggregator = busy_ledger
    ledger = shared_ledger(consortium.embedded.ledger_dir)
    height, state = ledger.height(), ledger.state_snapshot()
    with pytest.raises(ContractError):
        commit_round(aggregator, 1, model=updates.bytes(), update_hashes=["00" * 32])
    assert (ledger.height(), ledger.state_snapshot()) == (height, state)


def test_ledger_persists_across_reopen(busy_ledger):
    consortium, aggregator = busy_ledger
    before = world(aggregator)
    reopened = EmbeddedLedger.open(consortium.embedded.ledger_dir, read_only=True)
    try:
        assert reopened.height() == shared_ledger(consortium.embedded.ledger_dir).height()
        assert reopened.state_snapshot() == shared_ledger(consortium.embedded.ledger_dir).state_snapshot()
    finally:
        reopened.close()
    assert world(aggregator) == before


def test_read_only_ledger_refuses_submits_and_create_refuses_existing(consortium):
    ledger = EmbeddedLedger.open(consortium.embedded.ledger_dir, read_only=True)
    try:
        with pytest.raises(LedgerError, match="read-only"):
            ledger.submit(_signed(consortium.admin(), "InitConsortium", ("{}",)))
    finally:
        ledger.close()
    with pytest.raises(FileExistsError):
        EmbeddedLedger.create(
            consortium.embedded.ledger_dir, channel="x", organizations={}, orderer_msp=consortium.embedded.base
        )


def test_concurrent_submissions_from_threads_all_commit(busy_ledger, updates):
    consortium, aggregator = busy_ledger
    commit_round(aggregator, 1)
    aggregator.open_round(2, base_model=aggregator.latest_model().hash, deadline=consortium.now() + 600)
    clients = [consortium.client("Org1MSP" if i % 2 else "Org2MSP", f"member{i}") for i in range(8)]
    for i in range(len(clients)):
        mspid = "Org1MSP" if i % 2 else "Org2MSP"
        consortium.admin(mspid).enrol_trainer(common_name(mspid, f"member{i}"), dataset_size=100, schema_hash="ab" * 32)

    def join_and_submit(client):
        client.register("trainer")
        return client.submit_update(2, updates.bytes(), samples=10, privacy=dp(1.0), train_loss=0.2)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(join_and_submit, clients))
    assert len({r.hash for r in results}) == 8
    assert len(aggregator.updates(2)) == 8
    assert verify_ledger(consortium.embedded.ledger_dir).ok

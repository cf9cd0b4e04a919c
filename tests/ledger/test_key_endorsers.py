"""State-based endorsement on the embedded ledger: a key's endorsers are kept, replayed by verify, and a
transaction that writes such a key from another organisation is refused at commit, writing nothing.

The contract here is the network tests' compat contract (tests/fabric_network/compat_contract.py); its
Fabric counterpart is tests/fabric_network/test_compat.py (state-based endorsement).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence

import pytest

from fedledger.chaincode.embedded.bootstrap import EmbeddedConsortium, create_consortium
from fedledger.chaincode.embedded.ledger import DB_NAME, EmbeddedLedger
from fedledger.chaincode.embedded.verify import verify_ledger
from fedledger.chaincode.errors import KeyEndorsementFailure, PermissionDenied
from fedledger.chaincode.names import DEFAULT_CHANNEL
from fedledger.sdk.embedded import forget_ledger, shared_ledger
from fedledger.sdk.errors import ContractRejected
from fedledger.sdk.gateway import Contract, connect

from ..fabric_network.compat_contract import CompatTestContract

CHAINCODE = "fedledger_compat"


class _Compat(CompatTestContract):
    name = CHAINCODE


@pytest.fixture
def members(tmp_path) -> Iterator[EmbeddedConsortium]:
    members = create_consortium(tmp_path / "consortium")
    shared_ledger(members.ledger_dir).contract = _Compat()  # pyright: ignore[reportAttributeAccessIssue]
    yield members
    forget_ledger(members.ledger_dir)


def _contract(members: EmbeddedConsortium, mspid: str) -> Contract:
    identity, signer = members.user(mspid, "User1")
    gateway = connect(identity, signer=signer, ledger_dir=members.ledger_dir)
    return gateway.get_network(DEFAULT_CHANNEL).get_contract(CHAINCODE)


def _endorsers(contract: Contract, key: str) -> list[str] | None:
    return json.loads(contract.evaluate_transaction("KeyEndorsers", key))["endorsers"]


def _snapshot(ledger: EmbeddedLedger) -> tuple:
    return ledger.height(), ledger.state_snapshot(), ledger.key_endorsers_snapshot(), ledger.history_rows()


def test_endorsers_are_committed_with_the_write_and_read_in_later_transactions(members) -> None:
    org1 = _contract(members, "Org1MSP")
    org1.submit_transaction("PutWithEndorsers", "share/Org2MSP", "s0", "Org2MSP", "Org2MSP")
    org1.submit_transaction("Put", "plain", "p0")
    assert _endorsers(org1, "share/Org2MSP") == ["Org2MSP"]
    assert _endorsers(org1, "plain") is None
    assert _endorsers(org1, "missing") is None


@pytest.mark.parametrize(
    ("function", "args"),
    [
        ("Put", ("share/Org2MSP", "forged")),
        ("Delete", ("share/Org2MSP",)),
        ("SetEndorsers", ("share/Org2MSP", "Org1MSP")),
    ],
)
def test_another_org_cannot_write_delete_or_take_over_the_key(members, function: str, args: Sequence[str]) -> None:
    _contract(members, "Org1MSP").submit_transaction("PutWithEndorsers", "share/Org2MSP", "s0", "Org2MSP")
    ledger = shared_ledger(members.ledger_dir)
    before = _snapshot(ledger)
    with pytest.raises(KeyEndorsementFailure) as refused:
        _contract(members, "Org1MSP").submit_transaction(function, *args)
    assert isinstance(refused.value, PermissionDenied) and isinstance(refused.value, ContractRejected)
    assert refused.value.code == "ENDORSEMENT_POLICY_FAILURE"
    assert "'share/Org2MSP' may only be changed by Org2MSP, not Org1MSP" in str(refused.value)
    assert _snapshot(ledger) == before
    assert verify_ledger(members.ledger_dir).ok


def test_the_keys_org_alone_may_write_it_and_a_plain_write_keeps_its_endorsers(members) -> None:
    _contract(members, "Org1MSP").submit_transaction("PutWithEndorsers", "share/Org2MSP", "s0", "Org2MSP")
    org2 = _contract(members, "Org2MSP")
    org2.submit_transaction("Put", "share/Org2MSP", "s1")
    assert org2.evaluate_transaction("Get", "share/Org2MSP") == b"s1"
    assert _endorsers(org2, "share/Org2MSP") == ["Org2MSP"]
    assert verify_ledger(members.ledger_dir).ok


def test_a_refused_transaction_writes_none_of_its_other_keys(members) -> None:
    org1, org2 = _contract(members, "Org1MSP"), _contract(members, "Org2MSP")
    org1.submit_transaction("PutWithEndorsers", "share/Org2MSP", "s0", "Org2MSP")
    before = _snapshot(shared_ledger(members.ledger_dir))
    with pytest.raises(KeyEndorsementFailure):
        org1.submit_transaction("PutWithEndorsers", "share/Org2MSP", "s1", "Org1MSP")  # a new key too would fail
    assert _snapshot(shared_ledger(members.ledger_dir)) == before
    assert org2.evaluate_transaction("Get", "share/Org2MSP") == b"s0"


def test_deleting_the_key_drops_its_endorsers_and_clearing_restores_the_chaincode_policy(members) -> None:
    org1, org2 = _contract(members, "Org1MSP"), _contract(members, "Org2MSP")
    org1.submit_transaction("PutWithEndorsers", "a", "1", "Org2MSP")
    org1.submit_transaction("PutWithEndorsers", "b", "1", "Org2MSP")
    org2.submit_transaction("Delete", "a")
    org2.submit_transaction("SetEndorsers", "b")
    assert (_endorsers(org1, "a"), _endorsers(org1, "b")) == (None, None)
    org1.submit_transaction("Put", "a", "2")
    org1.submit_transaction("Put", "b", "2")
    assert verify_ledger(members.ledger_dir).ok


def test_endorsers_of_a_key_that_does_not_exist_are_ignored(members) -> None:
    org1 = _contract(members, "Org1MSP")
    org1.submit_transaction("SetEndorsers", "ghost", "Org2MSP")
    assert _endorsers(org1, "ghost") is None
    org1.submit_transaction("Put", "ghost", "mine")
    assert verify_ledger(members.ledger_dir).ok


def test_verify_reports_a_tampered_endorsers_table(members) -> None:
    _contract(members, "Org1MSP").submit_transaction("PutWithEndorsers", "share/Org2MSP", "s0", "Org2MSP")
    with sqlite3.connect(members.ledger_dir / DB_NAME) as db:
        db.execute("UPDATE key_endorsers SET mspids = ?", (json.dumps(["Org1MSP", "Org2MSP"]),))
    report = verify_ledger(members.ledger_dir)
    assert not report.ok
    assert "key endorsers differ from the blocks at key b'share/Org2MSP'" in report.problem


def test_a_ledger_made_before_key_endorsers_still_opens(members) -> None:
    forget_ledger(members.ledger_dir)
    with sqlite3.connect(members.ledger_dir / DB_NAME) as db:
        db.execute("DROP TABLE key_endorsers")
    assert verify_ledger(members.ledger_dir).ok
    ledger = shared_ledger(members.ledger_dir)
    ledger.contract = _Compat()  # pyright: ignore[reportAttributeAccessIssue]
    org1 = _contract(members, "Org1MSP")
    org1.submit_transaction("PutWithEndorsers", "k", "v", "Org1MSP")
    assert _endorsers(org1, "k") == ["Org1MSP"]


def test_endorsers_must_be_msp_ids(members) -> None:
    """A contract bug, not a refusal: it surfaces as the contract's own exception (INTERNAL on Fabric)."""
    with pytest.raises(ValueError, match=r"endorsers of 'k' must be a list of MSP IDs, got \[''\]"):
        _contract(members, "Org1MSP").submit_transaction("PutWithEndorsers", "k", "v", "")

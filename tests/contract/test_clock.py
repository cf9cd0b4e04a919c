"""Time the submitter cannot move: skewed proposals, deadlines, early closes and certificate validity.

On Fabric every endorsing peer bounds the proposal's timestamp by its own clock (the consortium's fake
clock moves the endorsers' too, tests/fabric_network/fixtures.py); the embedded ledger stamps transactions
with its own clock and refuses skewed proposals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fedledger.chaincode.errors import ClockSkew, FailedPrecondition
from fedledger.identity import load_msp_identity
from fedledger.sdk.client import FedLedgerClient, with_quorum
from fedledger.sdk.errors import EndorseError

from ..sdk_fabric.certs import issue_client_identity
from ..support import Consortium, UpdateFactory, admins, dp, participant_id, ready_round, world

HOUR = 3600.0


def skewed(consortium: Consortium, mspid: str, name: str, seconds: float) -> FedLedgerClient:
    """``name`` of ``mspid`` on a machine whose clock is ``seconds`` off the consortium's."""
    return consortium.connect(*consortium.identity(mspid, name), clock=lambda: consortium.now() + seconds)


def refused(consortium: Consortium, observer: FedLedgerClient, act: Callable[[], Any], error: type, match: str) -> None:
    """``act`` raises ``error`` and nothing changed: what the contract shows, and the ledger underneath."""
    before, ledger = world(observer), consortium.ledger_state()
    with pytest.raises(error, match=match):
        act()
    assert world(observer) == before and consortium.ledger_state() == ledger


def submit(client: FedLedgerClient, updates: UpdateFactory, number: int = 1) -> Any:
    return client.submit_update(number, updates.bytes(), samples=100, privacy=dp(1.0), train_loss=0.5)


def test_a_backdated_update_cannot_beat_the_deadline(consortium: Consortium, updates: UpdateFactory) -> None:
    aggregator, trainers, _ = ready_round(consortium, trainers=2, deadline_in=600)
    consortium.advance(700)  # the deadline passed 100 s ago
    late = skewed(consortium, "Org1MSP", "trainer0", -700)  # stamps its proposal as if it were still on time
    refused(consortium, aggregator, lambda: submit(late, updates), ClockSkew, "700 s behind this endorser's clock")
    refused(consortium, aggregator, lambda: submit(trainers[0], updates), FailedPrecondition, "passed its deadline")


def test_a_forward_dated_finalize_cannot_shut_out_late_members(consortium: Consortium, updates: UpdateFactory) -> None:
    aggregator, trainers, _ = ready_round(consortium, trainers=3, deadline_in=HOUR)
    submit(trainers[0], updates)
    submit(trainers[1], updates)  # trainer2 is still training
    hurried = skewed(consortium, "Org1MSP", "aggregator", 2 * HOUR)
    refused(consortium, aggregator, lambda: hurried.finalize_round(1), ClockSkew, "ahead of this endorser's clock")
    refused(consortium, aggregator, lambda: hurried.close_round(1), ClockSkew, "ahead of this endorser's clock")
    for act in (lambda: aggregator.close_round(1), lambda: aggregator.finalize_round(1)):
        refused(consortium, aggregator, act, FailedPrecondition, "1 expected trainer.*ProposeEarlyClose")
    # the late member is not shut out, and once everyone expected has submitted the round may close
    submit(trainers[2], updates)
    assert aggregator.close_round(1).closed_by == participant_id("Org1MSP", "aggregator")


def test_an_early_close_needs_a_quorum_of_organisations(consortium: Consortium, updates: UpdateFactory) -> None:
    aggregator, trainers, _ = ready_round(consortium, trainers=3, deadline_in=HOUR)
    submit(trainers[0], updates)
    org1 = consortium.admin()
    pending = org1.propose_early_close(1)
    assert (pending.status, aggregator.round(1).status) == ("open", "open")  # one organisation is not enough
    applied = with_quorum(admins(consortium)[1:], lambda admin: admin.approve(pending.id))
    assert applied.approvals == ["Org1MSP", "Org2MSP"]
    record = aggregator.round(1)
    assert (record.status, record.closed_by) == ("closed", "closed early by Org1MSP, Org2MSP")
    refused(consortium, aggregator, lambda: submit(trainers[1], updates), FailedPrecondition, "is closed")


def test_a_small_skew_is_tolerated(consortium: Consortium, updates: UpdateFactory) -> None:
    aggregator, _, _ = ready_round(consortium, trainers=1)
    slightly_off = skewed(consortium, "Org1MSP", "trainer0", 60)
    assert submit(slightly_off, updates).round == 1
    assert aggregator.rules().max_clock_skew_seconds == 300.0


def test_an_expired_certificate_is_refused_however_the_proposal_is_dated(
    consortium: Consortium, updates: UpdateFactory, tmp_path
) -> None:
    """The attack: a certificate valid for one day, used after it expired with a backdated proposal."""
    aggregator, _, _ = ready_round(consortium, trainers=1, deadline_in=10 * 24 * HOUR)
    msp = issue_client_identity(consortium.issuer("Org2MSP").path / "ca", tmp_path / "day", "day@org2.example.com")
    identity, signer = load_msp_identity(msp, "Org2MSP")
    consortium.admin("Org2MSP").enrol_trainer("day@org2.example.com", dataset_size=500, schema_hash="ab" * 32)
    consortium.connect(identity, signer).register("trainer")
    consortium.advance(2 * 24 * HOUR)  # the certificate expired a day ago
    now = consortium.connect(identity, signer)
    backdated = consortium.connect(identity, signer, clock=lambda: consortium.now() - 2 * 24 * HOUR)
    # embedded: the ledger checks the certificate at its own time; Fabric: the contract, at the bounded time
    for client in (now, backdated):
        refused(
            consortium,
            aggregator,
            lambda c=client: submit(c, updates),
            EndorseError,
            "not valid at|not at .* UTC|behind",
        )
    assert (
        aggregator.participant(identity.mspid + ":day@org2.example.com").status == "active"
    )  # nothing recorded against it: it simply cannot act any more

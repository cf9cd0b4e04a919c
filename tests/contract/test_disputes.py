"""Disputes: contesting a verdict, auditors of other organisations ruling on it, and what a ruling changes.

Every round here is judged by the real detector: four honest updates and one attack (an honest update
times -10, from Org1's trainer4), so the attack is rejected and an anomaly is recorded. Every refused
transaction is checked twice: the typed contract error, and that nothing the contract exposes changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import pytest

from fedledger.chaincode.errors import (
    AlreadyExists,
    ContractError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.errors import EndorseError

from ..aggregates import commit_round
from ..support import (
    Consortium,
    EmbeddedLedgerConsortium,
    UpdateFactory,
    change_rules,
    dp,
    grant,
    participant_id,
    ready_round,
    world,
)

DETECTING = {"detector_min_updates": 4}
WINDOW = 86400.0  # the default dispute_window_seconds
VOTING = 86400.0  # the default dispute_voting_seconds

ATTACKER = participant_id("Org1MSP", "trainer4")
HONEST_ORG1 = participant_id("Org1MSP", "trainer0")
HONEST_ORG2 = participant_id("Org2MSP", "trainer1")


@dataclass
class Judged:
    """Round 1 finalized: trainer0..3 accepted, trainer4 (Org1, the attacker) rejected."""

    consortium: Consortium
    aggregator: FedLedgerClient
    trainers: list[FedLedgerClient]
    auditors: dict[str, FedLedgerClient]  # one per member organisation, by MSP ID

    @property
    def attacker(self) -> FedLedgerClient:
        return self.trainers[4]

    @property
    def observer(self) -> FedLedgerClient:
        return self.consortium.admin()


def judge(
    consortium: Consortium, updates: UpdateFactory, rules: dict[str, Any] | None = None, *, members: int = 2
) -> Judged:
    """Round 1 judged; ``members=3`` adds Org3MSP as a member organisation: a third party to rule on
    disputes between Org1 and Org2 (embedded only: the Fabric test network has two organisations)."""
    msps = ["Org1MSP", "Org2MSP", "Org3MSP"][:members]
    aggregator, trainers, _genesis = ready_round(consortium, rules={**DETECTING, "member_msps": msps, **(rules or {})})
    for i, trainer in enumerate(trainers):
        tensors = updates.honest()
        if i == 4:
            tensors = {name: 10 * value for name, value in tensors.items()}
        trainer.submit_update(1, updates.bytes(tensors), samples=100, privacy=dp(1.0), train_loss=0.5)
    aggregator.close_round(1)
    record = aggregator.finalize_round(1)
    # Everything below relies on the detector's verdict: check it rather than assume it.
    assert record.rejected == [ATTACKER]
    assert sorted(record.accepted) == sorted(
        participant_id(("Org1MSP", "Org2MSP")[i % 2], f"trainer{i}") for i in range(4)
    )
    assert [a.participant for a in aggregator.anomalies(1)] == [ATTACKER]
    auditors = {mspid: grant(consortium, mspid, f"auditor{i + 1}", "auditor") for i, mspid in enumerate(msps)}
    return Judged(consortium, aggregator, trainers, auditors)


@pytest.fixture
def judged(consortium: Consortium, updates: UpdateFactory) -> Judged:
    return judge(consortium, updates)


@pytest.fixture
def members3(tmp_path) -> Iterator[Consortium]:
    """An embedded consortium whose CAs issue Org1, Org2 and Org3 identities."""
    orgs = {"Org1MSP": "org1.example.com", "Org2MSP": "org2.example.com", "Org3MSP": "org3.example.com"}
    network = EmbeddedLedgerConsortium(tmp_path / "three", orgs)
    yield network
    network.close()


@pytest.fixture
def judged3(members3: Consortium, updates: UpdateFactory) -> Judged:
    """Org3 is a member: a third party to disputes between Org1 and Org2."""
    return judge(members3, updates, members=3)


def state(consortium: Consortium) -> dict[str, Any]:
    """What the contract exposes (world + every dispute's votes) and the ledger underneath it (the embedded
    ledger's height and raw state; on Fabric, every transaction of the test's namespace in the blocks)."""
    observer = consortium.admin()
    snapshot = world(observer)
    for dispute in observer.disputes():
        snapshot[f"votes/{dispute.id}"] = [asdict(v) for v in observer.votes(dispute.round, dispute.participant)]
    snapshot["ledger"] = consortium.ledger_state()
    return snapshot


@contextmanager
def refused(consortium: Consortium, error: type[ContractError], match: str) -> Iterator[None]:
    """The block must raise ``error`` (as the SDK's typed EndorseError) and leave every record as it was."""
    before = state(consortium)
    with pytest.raises(error, match=match) as caught:
        yield
    assert isinstance(caught.value, EndorseError)
    assert state(consortium) == before


def pools_paid(client: FedLedgerClient) -> int:
    return sum(r.reward_pool for r in client.rounds() if r.finalized_at is not None and r.accepted)


# -- a rejection overturned ---------------------------------------------------------------------------


def test_owner_contests_rejection_and_auditor_of_another_org_overturns_it(judged: Judged) -> None:
    observer = judged.observer
    before = observer.participant(ATTACKER)
    assert observer.balances()[ATTACKER] == 0

    dispute = judged.attacker.open_dispute(1, ATTACKER, "my data is just different: a minority dialect")
    assert (dispute.kind, dispute.status, dispute.filed_by) == ("contest_rejection", "open", ATTACKER)
    assert dispute.voting_deadline == pytest.approx(dispute.opened_at + VOTING)

    vote = judged.auditors["Org2MSP"].cast_vote(1, ATTACKER, "overturn", "features within normal range")
    assert (vote.voter, vote.voter_msp, vote.decision) == (participant_id("Org2MSP", "auditor2"), "Org2MSP", "overturn")

    ruling = judged.trainers[1].resolve_dispute(1, ATTACKER)
    assert (ruling.status, ruling.votes_overturn, ruling.votes_uphold) == ("overturned", 1, 0)
    assert judged.trainers[1].last_result is not None
    assert ruling.ruling_tx == judged.trainers[1].last_result.transaction_id

    update = observer.update(1, ATTACKER)
    assert update.status == "accepted"
    assert "overturned by dispute" in update.reason
    record = observer.round(1)
    assert ATTACKER in record.accepted and record.rejected == []
    assert not record.revised_after_aggregate  # no aggregate was committed yet

    after = observer.participant(ATTACKER)
    assert (after.accepted_count, after.rejected_count) == (1, 0)
    assert after.trust > before.trust
    assert after.trust == observer.participant(HONEST_ORG1).trust

    balances = observer.balances()
    assert balances[ATTACKER] > 0
    assert sum(balances.values()) == pools_paid(observer) == 1000
    # equal samples and trust: each organisation's half of the pool (the default cap) splits among its members in
    # proportion to their weights, which norm clipping lowers for the reinstated x10 update
    weights = {p: observer.update(1, p).weight for p in balances}
    for org in ("Org1MSP", "Org2MSP"):
        members = {p: balances[p] for p in balances if p.startswith(org)}
        assert sum(members.values()) == 500
        total = sum(weights[p] for p in members)
        for member, amount in members.items():
            assert amount == pytest.approx(500 * weights[member] / total, abs=1)
    assert weights[ATTACKER] < min(w for p, w in weights.items() if p != ATTACKER)
    # the anomaly record is immutable history: it stays after the overturn
    assert [a.participant for a in observer.anomalies(1)] == [ATTACKER]


def test_overturned_rejection_must_be_in_the_aggregate(judged: Judged, updates: UpdateFactory) -> None:
    judged.attacker.open_dispute(1, ATTACKER, "false positive")
    judged.auditors["Org2MSP"].cast_vote(1, ATTACKER, "overturn")
    judged.auditors["Org2MSP"].resolve_dispute(1, ATTACKER)
    hashes = [u.hash for u in judged.aggregator.updates(1)]
    without = [u.hash for u in judged.aggregator.updates(1) if u.participant != ATTACKER]
    with refused(judged.consortium, InvalidArgument, "exactly the 5 accepted updates"):
        commit_round(judged.aggregator, 1, update_hashes=without)
    model = commit_round(judged.aggregator, 1, update_hashes=hashes)
    assert sorted(u["hash"] for u in model.updates) == sorted(hashes)


# -- an acceptance contested -----------------------------------------------------------------------


def test_contest_of_accepted_update_by_another_member_is_upheld(judged3: Judged) -> None:
    judged = judged3
    observer = judged.observer
    before = world(observer)
    dispute = judged.trainers[1].open_dispute(1, HONEST_ORG1, "suspiciously close to the mean")
    assert (dispute.kind, dispute.filed_by) == ("contest_acceptance", HONEST_ORG2)
    judged.auditors["Org3MSP"].cast_vote(1, HONEST_ORG1, "uphold", "nothing anomalous")
    ruling = judged.aggregator.resolve_dispute(1, HONEST_ORG1)
    assert (ruling.status, ruling.votes_uphold, ruling.votes_overturn) == ("upheld", 1, 0)

    after = world(observer)
    assert after.pop("disputes") != before.pop("disputes")
    assert after == before  # verdicts, trust, balances: all as they were


def test_contest_of_accepted_update_overturned_rejects_it(judged3: Judged) -> None:
    judged = judged3
    observer = judged.observer
    trust = observer.participant(HONEST_ORG1).trust
    anomalies = observer.anomalies()
    judged.auditors["Org2MSP"].open_dispute(1, HONEST_ORG1, "memorised test data")
    judged.auditors["Org3MSP"].cast_vote(1, HONEST_ORG1, "overturn")
    assert judged.trainers[3].resolve_dispute(1, HONEST_ORG1).status == "overturned"

    assert observer.update(1, HONEST_ORG1).status == "rejected"
    record = observer.round(1)
    assert sorted(record.rejected) == sorted([ATTACKER, HONEST_ORG1])
    assert HONEST_ORG1 not in record.accepted
    assert observer.participant(HONEST_ORG1).trust < trust
    balances = observer.balances()
    assert balances[HONEST_ORG1] == 0 and balances[ATTACKER] == 0
    assert sum(balances.values()) == pools_paid(observer) == 1000
    assert observer.anomalies() == anomalies  # anomaly records are written by FinalizeRound only


def test_overturn_after_aggregate_marks_the_round_revised_and_keeps_the_lineage(
    judged3: Judged, updates: UpdateFactory
) -> None:
    judged = judged3
    accepted = [u.hash for u in judged.aggregator.updates(1) if u.status == "accepted"]
    model = commit_round(judged.aggregator, 1, update_hashes=accepted)
    judged.trainers[1].open_dispute(1, HONEST_ORG1, "late evidence of poisoning")
    judged.auditors["Org3MSP"].cast_vote(1, HONEST_ORG1, "overturn")
    judged.auditors["Org3MSP"].resolve_dispute(1, HONEST_ORG1)

    record = judged.observer.round(1)
    assert (record.status, record.aggregate, record.revised_after_aggregate) == ("aggregated", model.hash, True)
    assert judged.observer.model(model.hash) == model  # the lineage records what was actually used
    assert sum(judged.observer.balances().values()) == 1000


# -- one vote per organisation ---------------------------------------------------------------------------


def test_auditors_of_one_organisation_cast_one_vote_and_cannot_overturn_alone(
    members3: Consortium, updates: UpdateFactory
) -> None:
    """The attack: an organisation registers three auditors to overturn the rejection of a poisoned update.

    Votes count per organisation, so its second and third auditors are refused, the quorum of two
    organisations is never met, the dispute expires and the poisoned update stays rejected and unpaid.
    """
    judged = judge(members3, updates, {"dispute_quorum": 2}, members=3)
    extra = [grant(members3, "Org2MSP", f"auditor-extra{i}", "auditor") for i in range(2)]
    judged.attacker.open_dispute(1, ATTACKER, "false positive")
    judged.auditors["Org2MSP"].cast_vote(1, ATTACKER, "overturn")
    for auditor in extra:
        with refused(members3, AlreadyExists, "Org2MSP already voted"):
            auditor.cast_vote(1, ATTACKER, "overturn")
    with refused(members3, FailedPrecondition, "has 1 organisation vote"):
        judged.attacker.resolve_dispute(1, ATTACKER)
    members3.advance(VOTING + 1)
    assert judged.attacker.resolve_dispute(1, ATTACKER).status == "expired"
    assert judged.observer.update(1, ATTACKER).status == "rejected"
    assert judged.observer.balances()[ATTACKER] == 0


def test_a_contested_acceptance_between_two_organisations_has_no_judge_and_expires(judged: Judged) -> None:
    """Org2 contests Org1's accepted update: both are parties, no third organisation exists, the verdict stands."""
    judged.trainers[1].open_dispute(1, HONEST_ORG1, "suspiciously close to the mean")
    for auditor, message in (("Org1MSP", "own organisation"), ("Org2MSP", "filer's organisation")):
        with refused(judged.consortium, PermissionDenied, message):
            judged.auditors[auditor].cast_vote(1, HONEST_ORG1, "overturn")
    judged.consortium.advance(VOTING + 1)
    assert judged.aggregator.resolve_dispute(1, HONEST_ORG1).status == "expired"
    assert judged.observer.update(1, HONEST_ORG1).status == "accepted"


# -- rulings: quorum, ties, expiry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decisions", "status"),
    [
        pytest.param(["overturn", "overturn"], "overturned", id="2-0-overturn"),
        pytest.param(["uphold", "uphold"], "upheld", id="2-0-uphold"),
        pytest.param(["overturn", "uphold"], "upheld", id="tie-upholds"),
    ],
)
def test_quorum_of_two_organisations_rules_by_majority(
    members3: Consortium, updates: UpdateFactory, decisions: list[str], status: str
) -> None:
    judged = judge(members3, updates, {"dispute_quorum": 2}, members=3)
    judged.attacker.open_dispute(1, ATTACKER, "false positive")
    for auditor, decision in zip([judged.auditors["Org2MSP"], judged.auditors["Org3MSP"]], decisions, strict=True):
        auditor.cast_vote(1, ATTACKER, decision)
    ruling = judged.attacker.resolve_dispute(1, ATTACKER)
    assert ruling.status == status
    assert judged.observer.update(1, ATTACKER).status == ("accepted" if status == "overturned" else "rejected")


@pytest.mark.parametrize("votes", [0, 1], ids=["no-votes", "one-vote-of-two"])
def test_without_quorum_the_dispute_expires_after_voting_and_the_verdict_stands(
    consortium: Consortium, updates: UpdateFactory, votes: int
) -> None:
    judged = judge(consortium, updates, {"dispute_quorum": 2})
    judged.attacker.open_dispute(1, ATTACKER, "false positive")
    if votes:
        judged.auditors["Org2MSP"].cast_vote(1, ATTACKER, "overturn")
    consortium.advance(VOTING + 1)
    before = world(judged.observer)

    ruling = judged.attacker.resolve_dispute(1, ATTACKER)
    assert (ruling.status, ruling.votes_overturn) == ("expired", votes)

    after = world(judged.observer)
    assert after.pop("disputes") != before.pop("disputes")
    assert after == before  # still rejected, same trust, same balances
    assert judged.observer.update(1, ATTACKER).status == "rejected"


# -- refusals -------------------------------------------------------------------------------------------


def _open_against_attacker(j: Judged) -> None:
    j.attacker.open_dispute(1, ATTACKER, "false positive")


def _open_and_vote(j: Judged) -> None:
    _open_against_attacker(j)
    j.auditors["Org2MSP"].cast_vote(1, ATTACKER, "overturn")


def _open_and_resolve(j: Judged) -> None:
    _open_and_vote(j)
    j.auditors["Org2MSP"].resolve_dispute(1, ATTACKER)


def _nothing(j: Judged) -> None:
    pass


def _stranger(j: Judged) -> FedLedgerClient:
    return j.consortium.client("Org1MSP", "stranger")  # a valid Org1 certificate, never registered


Step = Callable[[Judged], Any]

REFUSALS: list[Any] = [
    # (rules, prepare, act, error, message)
    pytest.param(
        {},
        _nothing,
        lambda j: _stranger(j).open_dispute(1, HONEST_ORG1, "I object"),
        PermissionDenied,
        "not a registered participant",
        id="dispute-by-unregistered-identity",
    ),
    pytest.param(
        {},
        _nothing,
        lambda j: j.trainers[1].open_dispute(1, ATTACKER, "let it in"),
        PermissionDenied,
        "only the owner",
        id="rejection-contested-by-non-owner",
    ),
    pytest.param(
        {},
        _nothing,
        lambda j: j.trainers[0].open_dispute(1, HONEST_ORG1, "reject me"),
        InvalidArgument,
        "cannot contest the acceptance of its own",
        id="owner-contests-own-acceptance",
    ),
    pytest.param(
        {},
        _nothing,
        lambda j: j.attacker.open_dispute(1, ATTACKER, "   "),
        InvalidArgument,
        "reason is required",
        id="blank-reason",
    ),
    pytest.param(
        {},
        _nothing,
        lambda j: j.trainers[1].open_dispute(1, participant_id("Org2MSP", "nobody"), "x"),
        NotFound,
        "does not exist",
        id="dispute-of-unknown-update",
    ),
    pytest.param(
        {},
        _nothing,
        lambda j: j.trainers[1].open_dispute(2, HONEST_ORG1, "x"),
        NotFound,
        "round 2",
        id="dispute-in-unknown-round",
    ),
    pytest.param(
        {},
        lambda j: j.consortium.advance(WINDOW + 1),
        _open_against_attacker,
        FailedPrecondition,
        "dispute window of round 1 closed",
        id="dispute-after-window",
    ),
    pytest.param(
        {"dispute_window_seconds": 60},
        lambda j: j.consortium.advance(61),
        lambda j: j.trainers[1].open_dispute(1, HONEST_ORG1, "x"),
        FailedPrecondition,
        "dispute window of round 1 closed",
        id="dispute-after-short-window",
    ),
    pytest.param(
        {},
        _open_against_attacker,
        _open_against_attacker,
        AlreadyExists,
        "already disputed",
        id="same-update-disputed-twice",
    ),
    pytest.param(
        {},
        lambda j: j.consortium.admin("Org2MSP").suspend(HONEST_ORG2, "investigation"),
        lambda j: j.trainers[1].open_dispute(1, HONEST_ORG1, "x"),
        PermissionDenied,
        "is suspended",
        id="dispute-by-suspended-member",
    ),
    pytest.param(
        {},
        _open_against_attacker,
        lambda j: j.auditors["Org1MSP"].cast_vote(1, ATTACKER, "overturn"),
        PermissionDenied,
        "cannot rule on an update of their own organisation",
        id="auditor-of-owner-org-votes",
    ),
    pytest.param(
        {},
        _open_against_attacker,
        lambda j: j.trainers[1].cast_vote(1, ATTACKER, "overturn"),
        PermissionDenied,
        "needs role auditor",
        id="trainer-votes",
    ),
    pytest.param(
        {},
        _open_and_vote,
        lambda j: j.auditors["Org2MSP"].cast_vote(1, ATTACKER, "uphold"),
        AlreadyExists,
        "already voted",
        id="double-vote",
    ),
    pytest.param(
        {},
        lambda j: (_open_against_attacker(j), j.consortium.advance(VOTING + 1)),
        lambda j: j.auditors["Org2MSP"].cast_vote(1, ATTACKER, "overturn"),
        FailedPrecondition,
        "voting on dispute 1/.* closed",
        id="vote-after-voting-deadline",
    ),
    pytest.param(
        {},
        _open_against_attacker,
        lambda j: j.auditors["Org2MSP"].cast_vote(1, ATTACKER, "abstain"),
        InvalidArgument,
        "decision",
        id="vote-unknown-decision",
    ),
    pytest.param(
        {},
        _nothing,
        lambda j: j.auditors["Org2MSP"].cast_vote(1, ATTACKER, "overturn"),
        NotFound,
        "does not exist",
        id="vote-without-dispute",
    ),
    pytest.param(
        {},
        _open_and_resolve,
        lambda j: j.auditors["Org2MSP"].cast_vote(1, ATTACKER, "uphold"),
        FailedPrecondition,
        "already overturned",
        id="vote-after-ruling",
    ),
    pytest.param(
        {},
        lambda j: (
            _open_against_attacker(j),
            j.consortium.admin("Org2MSP").suspend(participant_id("Org2MSP", "auditor2"), "x"),
        ),
        lambda j: j.auditors["Org2MSP"].cast_vote(1, ATTACKER, "overturn"),
        PermissionDenied,
        "is suspended",
        id="vote-by-suspended-auditor",
    ),
    pytest.param(
        {},
        _open_against_attacker,
        lambda j: j.attacker.resolve_dispute(1, ATTACKER),
        FailedPrecondition,
        "a ruling needs 1",
        id="ruling-without-any-vote",
    ),
    pytest.param(
        {"dispute_quorum": 2},
        _open_and_vote,
        lambda j: j.attacker.resolve_dispute(1, ATTACKER),
        FailedPrecondition,
        "has 1 organisation vote.*needs 2",
        id="ruling-without-quorum-of-two",
    ),
    pytest.param(
        {},
        _open_and_resolve,
        lambda j: j.attacker.resolve_dispute(1, ATTACKER),
        FailedPrecondition,
        "already overturned",
        id="ruling-twice",
    ),
    pytest.param(
        {},
        _open_and_vote,
        lambda j: _stranger(j).resolve_dispute(1, ATTACKER),
        PermissionDenied,
        "not a registered participant",
        id="ruling-by-unregistered-identity",
    ),
    pytest.param(
        {},
        _nothing,
        lambda j: j.attacker.resolve_dispute(1, ATTACKER),
        NotFound,
        "does not exist",
        id="ruling-without-dispute",
    ),
]


@pytest.mark.parametrize(("rules", "prepare", "act", "error", "message"), REFUSALS)
def test_refused(
    consortium: Consortium,
    updates: UpdateFactory,
    rules: dict[str, Any],
    prepare: Step,
    act: Step,
    error: type[ContractError],
    message: str,
) -> None:
    judged = judge(consortium, updates, rules)
    prepare(judged)
    with refused(consortium, error, message):
        act(judged)


def test_dispute_before_the_verdict_is_refused(consortium: Consortium, updates: UpdateFactory) -> None:
    aggregator, trainers, _genesis = ready_round(consortium, rules=DETECTING)
    for trainer in trainers:
        trainer.submit_update(1, updates.bytes(), samples=100, privacy=dp(1.0), train_loss=0.5)
    for step in (lambda: None, lambda: aggregator.close_round(1)):  # open, then closed: no verdict either way
        step()
        with refused(consortium, FailedPrecondition, "no verdict yet"):
            trainers[1].open_dispute(1, HONEST_ORG1, "premature")


def test_identity_of_an_org_outside_member_msps_cannot_dispute(members3: Consortium, updates: UpdateFactory) -> None:
    three_orgs = members3  # Org3's certificates are valid, but Org3 is not in member_msps here
    judged = judge(three_orgs, updates)
    assert three_orgs.admin().rules().member_msps == ["Org1MSP", "Org2MSP"]
    outsider = three_orgs.client("Org3MSP", "auditor")
    with refused(three_orgs, PermissionDenied, "Org3MSP is not a consortium member"):
        outsider.register("auditor")
    with refused(three_orgs, PermissionDenied, "not a registered participant"):
        outsider.open_dispute(1, HONEST_ORG1, "we were not invited")
    judged.attacker.open_dispute(1, ATTACKER, "false positive")
    with refused(three_orgs, PermissionDenied, "not a registered participant"):
        outsider.cast_vote(1, ATTACKER, "overturn")


# -- the ruling on the ledger: events and history -----------------------------------------------------


def _events_through(client: FedLedgerClient, block: int) -> list[tuple[str, dict[str, Any]]]:
    seen = []
    with client.events(start_block=0) as stream:
        for event in stream:
            seen.append((event.name, json.loads(event.payload)))
            if event.block_number >= block:
                break
    return seen


@pytest.mark.timeout(60)
def test_events_and_history_show_the_ruling(judged: Judged) -> None:
    filed = judged.attacker.open_dispute(1, ATTACKER, "false positive")
    assert judged.attacker.last_result is not None
    filed_tx = judged.attacker.last_result.transaction_id
    judged.auditors["Org2MSP"].cast_vote(1, ATTACKER, "overturn", "normal features")
    ruler = judged.auditors["Org2MSP"]
    ruling = ruler.resolve_dispute(1, ATTACKER)
    assert ruler.last_result is not None
    ruling_tx, ruling_block = ruler.last_result.transaction_id, ruler.last_result.block_number

    events = _events_through(judged.observer, ruling_block)
    dispute_id = f"1/{ATTACKER}"
    assert events[-3:] == [
        ("DisputeOpened", {"dispute": dispute_id, "kind": "contest_rejection", "by": ATTACKER}),
        ("VoteCast", {"dispute": dispute_id, "voter": participant_id("Org2MSP", "auditor2"), "decision": "overturn"}),
        ("DisputeResolved", {"dispute": dispute_id, "status": "overturned"}),
    ]

    history = judged.observer.history("dispute", 1, ATTACKER)
    assert [(h["tx_id"], h["value"]["status"]) for h in history] == [(filed_tx, "open"), (ruling_tx, "overturned")]
    assert history[0]["value"] == asdict(filed)
    assert history[-1]["value"] == asdict(ruling)
    assert ruling.ruling_tx == ruling_tx

    # the ruling's own transaction also rewrote the verdict, the round, trust and payouts
    update_history = judged.observer.history("update", 1, ATTACKER)
    assert [h["value"]["status"] for h in update_history] == ["submitted", "rejected", "accepted"]
    assert update_history[-1]["tx_id"] == ruling_tx
    assert judged.observer.history("round", 1)[-1]["tx_id"] == ruling_tx
    participant_history = judged.observer.history("participant", ATTACKER)
    assert participant_history[-1]["tx_id"] == ruling_tx
    assert participant_history[-1]["value"]["trust"] > participant_history[-2]["value"]["trust"]
    payouts = judged.observer.history("payout", ATTACKER, 1)
    assert [h["value"]["amount"] for h in payouts] == [0, judged.observer.balances()[ATTACKER]]
    assert payouts[-1]["value"]["amount"] > 0
    assert payouts[-1]["tx_id"] == ruling_tx


# -- regressions: contract bugs these tests found (fixed) -------------------------------------------


def test_owner_auto_suspended_by_the_rejection_can_still_contest_it(
    consortium: Consortium, updates: UpdateFactory
) -> None:
    judged = judge(consortium, updates, {"trust_suspend_below": 0.6})
    owner = judged.observer.participant(ATTACKER)
    assert (owner.status, owner.auto_suspended) == ("suspended", True)  # trust 4/7 < 0.6 after one rejection
    judged.attacker.open_dispute(1, ATTACKER, "false positive")
    judged.auditors["Org2MSP"].cast_vote(1, ATTACKER, "overturn")
    judged.auditors["Org2MSP"].resolve_dispute(1, ATTACKER)
    assert judged.observer.participant(ATTACKER).status == "active"


def test_member_of_an_org_removed_from_member_msps_cannot_dispute(judged: Judged) -> None:
    change_rules(judged.consortium, {"member_msps": ["Org1MSP"]})
    with refused(judged.consortium, PermissionDenied, "not a consortium member"):
        judged.trainers[1].open_dispute(1, HONEST_ORG1, "we are out but still here")


def test_overturn_in_an_abandoned_round_cannot_pay_its_pool(judged3: Judged) -> None:
    judged = judged3
    auditor_of = {"Org1MSP": judged.auditors["Org3MSP"], "Org2MSP": judged.auditors["Org3MSP"]}
    for i in range(4):  # members overturn every acceptance: nothing accepted, the round can be abandoned
        owner = participant_id(("Org1MSP", "Org2MSP")[i % 2], f"trainer{i}")
        judged.trainers[(i + 1) % 4].open_dispute(1, owner, "poisoned")
        auditor_of[owner.split(":")[0]].cast_vote(1, owner, "overturn")
        judged.attacker.resolve_dispute(1, owner)
    assert judged.observer.round(1).accepted == []
    assert judged.aggregator.abandon_round(1, "nothing accepted").status == "abandoned"

    with refused(judged.consortium, FailedPrecondition, "was abandoned"):
        judged.attacker.open_dispute(1, ATTACKER, "false positive")
    record = judged.observer.round(1)
    assert record.status == "abandoned"
    assert record.accepted == [] and judged.observer.balances()[ATTACKER] == 0


def test_a_round_with_open_disputes_cannot_be_abandoned(judged3: Judged) -> None:
    judged = judged3
    auditor_of = {"Org1MSP": judged.auditors["Org3MSP"], "Org2MSP": judged.auditors["Org3MSP"]}
    for i in range(4):
        owner = participant_id(("Org1MSP", "Org2MSP")[i % 2], f"trainer{i}")
        judged.trainers[(i + 1) % 4].open_dispute(1, owner, "poisoned")
        if i < 3:
            auditor_of[owner.split(":")[0]].cast_vote(1, owner, "overturn")
            judged.attacker.resolve_dispute(1, owner)
    judged.auditors["Org3MSP"].cast_vote(1, participant_id("Org2MSP", "trainer3"), "overturn")
    judged.attacker.resolve_dispute(1, participant_id("Org2MSP", "trainer3"))
    assert judged.observer.round(1).accepted == []
    judged.attacker.open_dispute(1, ATTACKER, "false positive")
    with refused(judged.consortium, FailedPrecondition, "open disputes"):
        judged.aggregator.abandon_round(1, "nothing accepted")


def test_the_filer_of_a_dispute_cannot_vote_on_it(judged: Judged) -> None:
    filer = judged.auditors["Org2MSP"]
    filer.open_dispute(1, HONEST_ORG1, "looks poisoned to me")
    with refused(judged.consortium, PermissionDenied, "the filer's organisation does not vote on it"):
        filer.cast_vote(1, HONEST_ORG1, "overturn")

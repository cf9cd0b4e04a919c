"""Property tests: random transaction sequences on a fresh embedded ledger keep the ledger's invariants.

A hypothesis state machine drives a consortium through registrations, honest / attacking / malformed
updates, round closing and finalizing, aggregates with the right or a wrong update list, new rounds,
suspensions, disputes, votes, rulings and clock jumps. Before each transaction the machine predicts from
the ledger's own state whether the contract must accept or refuse it; a refused transaction must raise a
ContractError and leave the ledger's world state and height exactly as they were. After every step:

- balances are conserved: their sum is the sum of the reward pools of finalized rounds with an accepted update,
  and each round's payouts sum to its pool (or to 0);
- no update is both accepted and rejected, and each round's lists match its updates' statuses;
- every anomaly record belongs to an update rejected by FinalizeRound (and each such update has one);
- the lineage is consistent: the head's parent chain reaches version 0 one version at a time, and each
  aggregated round's model lists exactly the updates accepted when it was committed;
- no participant spent more than epsilon_total, and trust and verdict counts agree with the updates;
- at the end, ``verify_ledger`` re-checks every block and signature and rebuilds the state.

Embedded only, on purpose: it checks the embedded ledger's own blocks and raw state, and its many generated
sequences would cost minutes of ordering on Fabric. The same contract rules run on Fabric in the example
tests of this folder (the ``consortium`` fixture's ``fabric`` param).
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fedledger.chaincode.embedded.verify import verify_ledger
from fedledger.chaincode.errors import ContractError
from fedledger.chaincode.privacy_budget import DPParams, epsilon_of
from fedledger.chaincode.records import Dispute, Participant, Round, Update
from fedledger.chaincode.trust import trust_score
from fedledger.sdk.client import FedLedgerClient

from ..aggregates import commit_round, honest_aggregate
from ..support import SCHEMA, EmbeddedLedgerConsortium, UpdateFactory, dp, grant, participant_id, ready_round

RULES: dict[str, Any] = {
    "detector_min_updates": 4,
    "detector_n_estimators": 50,
    "epsilon_per_round": 5.0,
    "epsilon_total": 8.0,  # two or three rounds of updates exhaust a trainer's budget
    "max_update_norm": 50.0,
    "min_participants_per_round": 2,
    "trust_suspend_below": 0.5,  # two rejections suspend a trainer
    "dispute_window_seconds": 5000.0,
    "dispute_voting_seconds": 3000.0,
}
ROUND_SECONDS = 3600.0
TRAINERS = [("Org1MSP" if i % 2 == 0 else "Org2MSP", f"trainer{i}") for i in range(8)]  # 0-3 registered at start
AUDITORS = [("Org1MSP", "auditor0"), ("Org2MSP", "auditor1"), ("Org1MSP", "auditor2"), ("Org2MSP", "auditor3")]
STRANGER = ("Org2MSP", "stranger")  # valid certificate, never registered
MEMBERS = [*TRAINERS, *AUDITORS, STRANGER]
KINDS = ["honest", "honest", "attack", "nan", "shape", "norm"]
MALFORMED = {"nan", "shape", "norm"}
BY_ID = {participant_id(*m): m for m in MEMBERS}


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.consortium: EmbeddedLedgerConsortium | None = None
        self.finalize_rejected: dict[int, set[str]] = {}  # round -> participants FinalizeRound rejected
        self.commit_accepted: dict[int, set[str]] = {}  # round -> hashes accepted when its aggregate was committed

    # -- setup and plumbing ------------------------------------------------------------------------------
    @initialize(quorum=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
    def setup(self, quorum: int, seed: int) -> None:
        self.consortium = EmbeddedLedgerConsortium(Path(self.tmp.name) / "consortium")
        self.factory = UpdateFactory(seed)
        self.aggregator, _trainers, self.genesis = ready_round(
            self.consortium, trainers=4, rules={**RULES, "dispute_quorum": quorum}, deadline_in=ROUND_SECONDS
        )
        self.observer = self.consortium.admin()
        for mspid, name in AUDITORS:
            grant(self.consortium, mspid, name, "auditor")
        self.quorum = quorum

    def teardown(self) -> None:
        try:
            if self.consortium is not None:
                report = verify_ledger(self.consortium.embedded.ledger_dir)
                assert report.ok, str(report)
        finally:
            if self.consortium is not None:
                self.consortium.close()
            self.tmp.cleanup()

    def client(self, who: tuple[str, str]) -> FedLedgerClient:
        assert self.consortium is not None
        return self.consortium.client(*who)

    def ledger_state(self) -> tuple[int, dict[bytes, bytes]]:
        """The ledger's height and raw world state: every record any query could read."""
        assert self.consortium is not None
        return self.consortium.ledger_state()

    def attempt(self, label: str, expect_ok: bool, action: Callable[[], Any]) -> Any:
        """Runs ``action``; the contract must accept it iff ``expect_ok``, and a refusal must change nothing."""
        before = self.ledger_state()
        try:
            result = action()
        except ContractError as exc:
            assert not expect_ok, f"{label}: refused unexpectedly: {exc}"
            assert self.ledger_state() == before, f"{label}: refused ({exc.code}) but the ledger changed"
            event(f"{label}: refused")
            return None
        assert expect_ok, f"{label}: accepted although the ledger's state says it must be refused"
        assert self.ledger_state()[0] == before[0] + 1
        event(f"{label}: ok")
        return result

    def now(self) -> float:
        assert self.consortium is not None
        return self.consortium.now()

    def current(self) -> Round:
        return max(self.observer.rounds(), key=lambda r: r.number)

    def participants(self) -> dict[str, Participant]:
        return {p.id: p for p in self.observer.participants()}

    def active(self, pid: str, *roles: str) -> bool:
        p = self.participants().get(pid)
        return p is not None and p.status == "active" and (not roles or p.role in roles)

    def round_or_none(self, number: int) -> Round | None:
        return next((r for r in self.observer.rounds() if r.number == number), None)

    def update_or_none(self, number: int, pid: str) -> Update | None:
        if self.round_or_none(number) is None:
            return None
        return next((u for u in self.observer.updates(number) if u.participant == pid), None)

    def dispute_or_none(self, number: int, pid: str) -> Dispute | None:
        return next((d for d in self.observer.disputes() if d.round == number and d.participant == pid), None)

    def targets(self) -> list[tuple[int, str]]:
        """Every update of a finalized round (or, if none, every update), plus one that does not exist."""
        rounds = self.observer.rounds()
        judged = [r for r in rounds if r.finalized_at is not None] or rounds
        found = [(r.number, u.participant) for r in judged for u in self.observer.updates(r.number)]
        return [*found, (self.current().number, participant_id("Org2MSP", "nobody"))]

    # -- participants --------------------------------------------------------------------------------------
    @rule(index=st.integers(0, len(TRAINERS) - 1))
    def register_trainer(self, index: int) -> None:
        pid = participant_id(*TRAINERS[index])
        fresh = pid not in self.participants()
        client = self.client(TRAINERS[index])
        if fresh:  # its organisation's admin enrols it first (EnrolTrainer is not what this rule tests)
            assert self.consortium is not None
            mspid = TRAINERS[index][0]
            self.consortium.admin(mspid).enrol_trainer(pid.partition(":")[2], dataset_size=500, schema_hash=SCHEMA)
        self.attempt("register", fresh, lambda: client.register("trainer"))

    @rule(index=st.integers(0, len(TRAINERS) + len(AUDITORS) - 1), suspend=st.booleans(), by_admin=st.booleans())
    def set_status(self, index: int, suspend: bool, by_admin: bool) -> None:
        pid = participant_id(*(TRAINERS + AUDITORS)[index])
        p = self.participants().get(pid)
        # an admin acts on its own organisation's members only (the observer is Org1's admin)
        expect = by_admin and p is not None and p.mspid == "Org1MSP" and (p.status == "active") == suspend
        actor = self.observer if by_admin else self.client(TRAINERS[0])
        action = actor.suspend if suspend else actor.reinstate
        self.attempt("suspend" if suspend else "reinstate", expect, lambda: action(pid, "property test"))

    # -- updates ---------------------------------------------------------------------------------------------
    def _payload(self, kind: str) -> bytes:
        tensors = self.factory.honest()
        if kind == "attack":
            tensors = {k: -10 * v for k, v in tensors.items()}
        elif kind == "nan":
            name = sorted(tensors)[0]
            tensors[name][0, 0] = np.nan
        elif kind == "shape":
            name = sorted(tensors)[0]
            tensors[name] = tensors[name][:, :-1].copy()
        elif kind == "norm":
            tensors = {k: 1000 * v for k, v in tensors.items()}
        return self.factory.bytes(tensors)

    def privacy_history(self, pid: str) -> list[DPParams]:
        """The DP-SGD parameters of every update ``pid`` submitted, as the ledger shows them."""
        updates = (u for r in self.observer.rounds() for u in self.observer.updates(r.number))
        return [DPParams.parse(u.privacy) for u in updates if u.participant == pid and u.privacy]

    def _submit(self, who: tuple[str, str], number: int, kind: str, epsilon: float) -> Update | None:
        pid = participant_id(*who)
        record = self.round_or_none(number)
        rules = self.observer.rules()
        expect = (
            kind not in MALFORMED
            and self.active(pid, "trainer")
            and record is not None
            and record.status == "open"
            and self.now() < record.deadline
            and self.update_or_none(number, pid) is None
            and epsilon_of([dp(epsilon)], 1e-5) <= rules.epsilon_per_round
            and epsilon_of([*self.privacy_history(pid), dp(epsilon)], rules.dp_delta) <= rules.epsilon_total
        )
        client, payload = self.client(who), self._payload(kind)
        return self.attempt(
            f"submit {kind}",
            expect,
            lambda: client.submit_update(number, payload, samples=100, privacy=dp(epsilon), train_loss=0.5),
        )

    @rule(
        batch=st.lists(
            st.tuples(st.integers(0, len(TRAINERS) - 1), st.sampled_from(KINDS), st.sampled_from([1.0, 3.0, 5.0, 6.0])),
            min_size=1,
            max_size=5,
        ),
        offset=st.sampled_from([0, 0, 0, 1, -1]),
    )
    def submit_updates(self, batch: list[tuple[int, str, float]], offset: int) -> None:
        number = self.current().number + offset
        for index, kind, epsilon in batch:
            self._submit(TRAINERS[index], number, kind, epsilon)

    # -- rounds ----------------------------------------------------------------------------------------------
    def _close(self, number: int) -> Round | None:
        record = self.round_or_none(number)
        expect = record is not None and record.status == "open" and self._closable(record)
        return self.attempt("close", expect, lambda: self.aggregator.close_round(number))

    def _closable(self, record: Round) -> bool:
        """Early close: only once every trainer expected when the round opened has submitted."""
        submitted = {u.participant for u in self.observer.updates(record.number)}
        return self.now() >= record.deadline or set(record.expected) <= submitted

    def _finalize(self, record: Round) -> Round | None:
        due = record.status == "closed" or (record.status == "open" and self._closable(record))
        expect = due and len(self.observer.updates(record.number)) >= RULES["min_participants_per_round"]
        finalized = self.attempt("finalize", expect, lambda: self.aggregator.finalize_round(record.number))
        if finalized is not None:
            self.finalize_rejected[record.number] = set(finalized.rejected)
            event(f"finalize: {len(finalized.rejected)} rejected")
        return finalized

    def _commit(self, record: Round, variant: str) -> None:
        updates = self.observer.updates(record.number)
        accepted = sorted(u.hash for u in updates if u.status == "accepted")
        others = [u.hash for u in updates if u.status != "accepted"]
        used = {
            "exact": accepted,
            "missing": accepted[1:],
            "rejected": accepted + others[:1],
            "duplicate": accepted + accepted[:1],
            "empty": [],
        }[variant]
        expect = record.status == "finalized" and bool(accepted) and sorted(used) == accepted
        # the peers recompute the aggregate: the real one where there is one, any bytes where it cannot commit
        real = record.status == "finalized" and bool(accepted)
        aggregate = honest_aggregate(self.aggregator, record.number)[0] if real else self.factory.bytes()
        model = self.attempt(
            f"commit {variant}",
            expect,
            lambda: commit_round(self.aggregator, record.number, model=aggregate, update_hashes=used),
        )
        if model is not None:
            self.commit_accepted[record.number] = set(accepted)

    def _abandon(self, record: Round) -> None:
        open_disputes = any(d.status == "open" for d in self.observer.disputes(record.number))
        expect = not open_disputes and (
            record.status in ("open", "closed") or (record.status == "finalized" and not record.accepted)
        )
        self.attempt("abandon", expect, lambda: self.aggregator.abandon_round(record.number, "property test"))

    def _open(self, record: Round, variant: str) -> None:
        latest = self.observer.latest_model().hash
        number = {"next": 1, "stale_base": 1, "skip": 2, "again": 0}[variant] + record.number
        base = self.genesis if variant == "stale_base" else latest
        expect = number == record.number + 1 and record.status in ("aggregated", "abandoned") and base == latest
        deadline = self.now() + ROUND_SECONDS
        self.attempt(
            f"open {variant}", expect, lambda: self.aggregator.open_round(number, base_model=base, deadline=deadline)
        )

    @rule(offset=st.sampled_from([0, 0, 1]))
    def close_round(self, offset: int) -> None:
        self._close(self.current().number + offset)

    @rule()
    def finalize_round(self) -> None:
        self._finalize(self.current())

    @rule(variant=st.sampled_from(["exact", "exact", "missing", "rejected", "duplicate", "empty"]))
    def commit_aggregate(self, variant: str) -> None:
        self._commit(self.current(), variant)

    @rule()
    def give_up_round(self) -> None:
        self._abandon(self.current())

    @rule(variant=st.sampled_from(["next", "next", "stale_base", "skip", "again"]))
    def open_round(self, variant: str) -> None:
        self._open(self.current(), variant)

    @rule()
    def advance_round(self) -> None:
        """One round forward to its verdicts, with one attack in it.

        Named to come first among the rules without arguments: hypothesis's simplest sequences repeat that
        rule, and this one makes them run round after round until the trainers' privacy budgets run out.
        """
        self._drive("finalized", 1)

    @rule(goal=st.sampled_from(["finalized", "aggregated", "open"]), attacks=st.integers(0, 2))
    def drive_round(self, goal: str, attacks: int) -> None:
        self._drive(goal, attacks)

    def _drive(self, goal: str, attacks: int) -> None:
        """Takes the current round through its phases until ``goal``, so that sequences reach verdicts."""
        started = self.current().number
        for _ in range(6):
            record = self.current()
            if record.status == goal and (goal != "open" or record.number > started):
                return
            if record.status == "open" and self.now() < record.deadline:
                self._fill(record.number, attacks)
                self._close(record.number)
            elif record.status in ("open", "closed"):
                if len(self.observer.updates(record.number)) < RULES["min_participants_per_round"]:
                    self._abandon(record)
                else:
                    self._finalize(record)
            elif record.status == "finalized":
                if record.accepted:
                    self._commit(record, "exact")
                else:
                    self._abandon(record)
            else:
                self._open(record, "next")

    def _fill(self, number: int, attacks: int) -> None:
        """Honest updates from every trainer able to submit (registering more if needed), then ``attacks``."""
        submitted = {u.participant for u in self.observer.updates(number)}
        able = []
        for who in TRAINERS:
            pid = participant_id(*who)
            if pid not in self.participants():
                self.register_trainer(TRAINERS.index(who))
            if pid not in submitted and self.active(pid) and self.observer.balance(pid).epsilon_spent <= 7.0:
                able.append(who)
        for i, who in enumerate(able[:6]):
            self._submit(who, number, "attack" if i >= len(able[:6]) - attacks else "honest", 1.0)

    @rule(seconds=st.sampled_from([700.0, 3100.0, 4500.0, 90000.0]))
    def tick_clock(self, seconds: float) -> None:
        """Moves the fake clock: past round deadlines, voting deadlines and dispute windows."""
        assert self.consortium is not None
        self.consortium.advance(seconds)

    # -- disputes ----------------------------------------------------------------------------------------------
    @rule(data=st.data(), filer=st.sampled_from(["fit", "fit", "fit", "owner", "member", "anyone"]))
    def open_dispute(self, data: st.DataObject, filer: str) -> None:
        number, pid = data.draw(st.sampled_from(self.targets()), label="target")
        target = self.update_or_none(number, pid)
        if filer == "fit":  # the owner contests a rejection, another member an acceptance
            filer = "owner" if target is not None and target.status == "rejected" else "member"
        who = {
            "owner": BY_ID.get(pid, STRANGER),
            "member": data.draw(st.sampled_from([m for m in MEMBERS[:-1] if participant_id(*m) != pid])),
            "anyone": data.draw(st.sampled_from(MEMBERS)),
        }[filer]
        blank = data.draw(st.sampled_from([False] * 5 + [True]), label="blank reason")
        filer_id = participant_id(*who)
        record, update = self.round_or_none(number), self.update_or_none(number, pid)
        owner_contesting_rejection = update is not None and filer_id == pid and update.status == "rejected"
        registered = self.participants().get(filer_id) is not None
        expect = (
            not blank
            and (self.active(filer_id) or (registered and owner_contesting_rejection))
            and record is not None
            and record.status != "abandoned"
            and update is not None
            and record.finalized_at is not None
            and update.status != "submitted"
            and self.now() <= record.finalized_at + RULES["dispute_window_seconds"]
            and (filer_id == pid) == (update.status == "rejected")
            and self.dispute_or_none(number, pid) is None
        )
        client, reason = self.client(who), " " if blank else "property test"
        self.attempt("dispute", expect, lambda: client.open_dispute(number, pid, reason))

    @rule(
        data=st.data(),
        decisions=st.lists(st.sampled_from(["uphold", "overturn", "overturn"]), max_size=2),
        wait=st.sampled_from([False, False, True]),
    )
    def contest_and_rule(self, data: st.DataObject, decisions: list[str], wait: bool) -> None:
        """A whole dispute in one step: the fitting member files it, auditors of other organisations vote,
        then (after the voting deadline if ``wait``) anyone rules."""
        self.open_dispute(data, "fit")
        for decision in decisions:
            self.cast_vote(data, True, decision)
        if wait:
            self.tick_clock(RULES["dispute_voting_seconds"] + 1)
        self.resolve_dispute(data, data.draw(st.integers(0, len(MEMBERS) - 1), label="resolver"))

    def _open_disputes(self) -> list[tuple[int, str]]:
        found = [(d.round, d.participant) for d in self.observer.disputes()]  # open ones first, then any
        found = [(d.round, d.participant) for d in self.observer.disputes() if d.status == "open"] or found
        return found or [(self.current().number, participant_id(*TRAINERS[0]))]

    @rule(
        data=st.data(),
        fit=st.sampled_from([True, True, False]),
        decision=st.sampled_from(["uphold", "overturn", "overturn"]),
    )
    def cast_vote(self, data: st.DataObject, fit: bool, decision: str) -> None:
        number, pid = data.draw(st.sampled_from(self._open_disputes()), label="dispute")
        eligible = [a for a in AUDITORS if a[0] != pid.split(":", 1)[0]]  # auditors of another organisation
        voter = data.draw(st.sampled_from(eligible if fit else [*AUDITORS, TRAINERS[1], STRANGER]), label="voter")
        voter_id = participant_id(*voter)
        dispute = self.dispute_or_none(number, pid)
        expect = (
            self.active(voter_id, "auditor")
            and dispute is not None
            and dispute.status == "open"
            and voter[0] != pid.split(":", 1)[0]  # not the owner's organisation
            and voter[0] != dispute.filed_by.split(":", 1)[0]  # nor the filer's
            and self.now() <= dispute.voting_deadline
            and all(v.voter_msp != voter[0] for v in self.observer.votes(number, pid))  # one vote per organisation
        )
        client = self.client(voter)
        self.attempt("vote", expect, lambda: client.cast_vote(number, pid, decision, "property test"))

    @rule(data=st.data(), resolver=st.integers(0, len(MEMBERS) - 1))
    def resolve_dispute(self, data: st.DataObject, resolver: int) -> None:
        number, pid = data.draw(st.sampled_from(self._open_disputes()), label="dispute")
        dispute = self.dispute_or_none(number, pid)
        expect = (
            self.active(participant_id(*MEMBERS[resolver]))
            and dispute is not None
            and dispute.status == "open"
            and (len(self.observer.votes(number, pid)) >= self.quorum or self.now() > dispute.voting_deadline)
        )
        client = self.client(MEMBERS[resolver])
        ruling = self.attempt("resolve", expect, lambda: client.resolve_dispute(number, pid))
        if ruling is not None:
            event(f"ruling: {ruling.status}")

    # -- invariants ------------------------------------------------------------------------------------------
    @invariant()
    def ledger_invariants(self) -> None:
        rounds = self.observer.rounds()
        updates = {r.number: self.observer.updates(r.number) for r in rounds}
        participants = self.participants()
        rules = self.observer.rules()
        balances = self.observer.balances()
        payouts = {pid: self.observer.balance(pid) for pid in participants}

        # balances conserved
        paid = sum(r.reward_pool for r in rounds if r.finalized_at is not None and r.accepted)
        assert sum(balances.values()) == paid
        for pid, balance in payouts.items():
            assert balances.get(pid, 0) == balance.balance == sum(p.amount for p in balance.payouts)
        for r in rounds:
            amounts = {p.participant: p.amount for b in payouts.values() for p in b.payouts if p.round == r.number}
            assert sum(amounts.values()) == (r.reward_pool if r.finalized_at is not None and r.accepted else 0)
            assert all(amounts.get(pid, 0) == 0 for pid in r.rejected)

        # no update both accepted and rejected; the round's lists match the updates' statuses
        for r in rounds:
            assert not set(r.accepted) & set(r.rejected)
            status = {u.participant: u.status for u in updates[r.number]}
            if r.finalized_at is None:
                assert set(status.values()) <= {"submitted"} and not r.accepted and not r.rejected
            else:
                assert sorted(r.accepted) == sorted(p for p, s in status.items() if s == "accepted")
                assert sorted(r.rejected) == sorted(p for p, s in status.items() if s == "rejected")
                assert len(r.accepted) + len(r.rejected) == len(status)

        # anomaly records: exactly the updates FinalizeRound rejected
        anomalies = {(a.round, a.participant): a for a in self.observer.anomalies()}
        expected = {(n, pid) for n, rejected in self.finalize_rejected.items() for pid in rejected}
        assert set(anomalies) == expected
        for (number, pid), anomaly in anomalies.items():
            assert anomaly.update_hash == next(u.hash for u in updates[number] if u.participant == pid)

        # lineage
        head = self.observer.latest_model()
        chain = self.observer.lineage(head.hash)
        assert chain[0] == head and chain[-1].version == 0 and chain[-1].parent is None
        for child, parent in itertools.pairwise(chain):
            assert child.parent == parent.hash and child.version == parent.version + 1
        aggregated = [r for r in rounds if r.aggregate is not None]
        assert head.version == len(aggregated) == len(self.commit_accepted)
        on_chain = {m.hash for m in chain}
        for r in rounds:
            assert (r.status == "aggregated") == (r.aggregate is not None)
            if r.aggregate is None:
                continue
            model = self.observer.model(r.aggregate)
            assert model.hash in on_chain and model.round == r.number and model.parent == r.base_model
            assert {u["hash"] for u in model.updates} == self.commit_accepted[r.number]
            if not r.revised_after_aggregate:
                assert self.commit_accepted[r.number] == {u.hash for u in updates[r.number] if u.status == "accepted"}

        # privacy budget, trust and verdict counts
        for pid, p in participants.items():
            assert payouts[pid].epsilon_spent <= rules.epsilon_total + 1e-9
            mine = [u for n in updates for u in updates[n] if u.participant == pid]
            composed = epsilon_of([DPParams.parse(u.privacy) for u in mine if u.privacy], rules.dp_delta)
            assert payouts[pid].epsilon_spent == composed
            assert p.accepted_count == sum(u.status == "accepted" for u in mine)
            assert p.rejected_count == sum(u.status == "rejected" for u in mine)
            assert p.trust == trust_score(rules, p.accepted_count, p.rejected_count)


LedgerMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=25,
    deadline=None,
    # Each step is a real ledger transaction: shrinking a failure could take many minutes, so report it unshrunk.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
test_ledger_invariants = LedgerMachine.TestCase

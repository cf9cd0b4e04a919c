"""Rounds, FinalizeRound (detector verdicts, anomalies, trust, rewards) and CommitAggregate (lineage)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from fedledger.chaincode.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from fedledger.chaincode.records import Rules

from ..aggregates import commit_round, honest_aggregate
from ..support import dp, participant_id, ready_round, tensors_bytes, world, zero_model


def attacked_round(consortium, updates, *, scale=-10.0, rules=None):
    """Four honest trainers and trainer4 sending an honest update times ``scale``; round 1 finalized."""
    aggregator, trainers, genesis = ready_round(consortium, rules={"detector_min_updates": 4, **(rules or {})})
    for i, trainer in enumerate(trainers):
        tensors = updates.honest()
        if i == 4:
            tensors = {k: v * scale for k, v in tensors.items()}
        trainer.submit_update(1, tensors_bytes(tensors), samples=100 + 10 * i, privacy=dp(1.0), train_loss=0.5)
    aggregator.close_round(1)
    return aggregator, trainers, genesis, aggregator.finalize_round(1)


def test_colluding_near_copies_are_both_rejected_and_named(consortium, updates):
    """trainer3 and trainer4 submit one sign-flipped update, jittered so the bytes (and hashes) differ."""
    aggregator, trainers, _ = ready_round(consortium, rules={"detector_min_updates": 4})
    poison = {k: -v for k, v in updates.honest().items()}
    rng = np.random.default_rng(0)
    for i, trainer in enumerate(trainers):
        tensors = updates.honest()
        if i >= 3:
            tensors = {k: v + rng.normal(scale=1e-4, size=v.shape).astype(v.dtype) for k, v in poison.items()}
        trainer.submit_update(1, tensors_bytes(tensors), samples=100 + 10 * i, privacy=dp(1.0), train_loss=0.5)
    aggregator.close_round(1)
    finalized = aggregator.finalize_round(1)
    colluders = [participant_id("Org2MSP", "trainer3"), participant_id("Org1MSP", "trainer4")]
    assert sorted(finalized.rejected) == sorted(colluders)
    records = {a.participant: a for a in aggregator.anomalies(1)}
    assert sorted(records) == sorted(colluders)
    for mine, twin in (colluders, colluders[::-1]):
        anomaly = records[mine]
        assert anomaly.rule == "near-copies" and f"with {twin}" in anomaly.reason
        assert anomaly.similarity is not None and anomaly.similarity > Rules().detector_max_similarity
    honest = [u for u in aggregator.updates(1) if u.participant not in colluders]
    assert all(u.rule == "within-limits" and u.similarity is not None and u.similarity < 0.99 for u in honest)


def test_open_round_rules(consortium, updates):
    aggregator, trainers, genesis = ready_round(consortium, trainers=1)
    before = world(aggregator)
    with pytest.raises(AlreadyExists):
        aggregator.open_round(1, base_model=genesis, deadline=consortium.now() + 10)
    with pytest.raises(FailedPrecondition, match="round 1 must be aggregated or abandoned"):
        aggregator.open_round(2, base_model=genesis, deadline=consortium.now() + 10)
    with pytest.raises(PermissionDenied, match="needs role aggregator"):
        trainers[0].open_round(2, base_model=genesis, deadline=consortium.now() + 10)
    with pytest.raises(InvalidArgument, match="not in the future"):
        aggregator.open_round(2, base_model=genesis, deadline=consortium.now() - 1)
    with pytest.raises(FailedPrecondition, match="not current"):
        aggregator.open_round(2, base_model=genesis, deadline=consortium.now() + 10, rules_version=7)
    with pytest.raises(InvalidArgument, match="base_model_hash must be a hex SHA-256"):
        aggregator.open_round(2, base_model="v1", deadline=consortium.now() + 10)
    assert world(aggregator) == before
    aggregator.abandon_round(1, "nobody came")
    with pytest.raises(FailedPrecondition, match="not the latest global model"):
        aggregator.open_round(2, base_model="ab" * 32, deadline=consortium.now() + 10)
    assert aggregator.open_round(2, base_model=genesis, deadline=consortium.now() + 10).status == "open"


def test_genesis_model_is_registered_once(consortium):
    aggregator, _, genesis = ready_round(consortium, trainers=0)
    model = aggregator.model(genesis)
    assert (model.version, model.parent, model.round) == (0, None, None)
    assert model.manifest["layer.0.lora_A"] == [[8, 32], "F32"]
    before = world(aggregator)
    with pytest.raises(AlreadyExists):
        aggregator.register_genesis_model(zero_model(), name="again")
    assert world(aggregator) == before


def test_finalize_rejects_the_attacker_and_records_everything(consortium, updates):
    aggregator, _trainers, _, finalized = attacked_round(consortium, updates)
    attacker = participant_id("Org1MSP", "trainer4")
    assert finalized.status == "finalized"
    assert finalized.rejected == [attacker]
    assert len(finalized.accepted) == 4 and attacker not in finalized.accepted
    assert not set(finalized.accepted) & set(finalized.rejected)
    statuses = {u.participant: u.status for u in aggregator.updates(1)}
    assert statuses[attacker] == "rejected" and list(statuses.values()).count("accepted") == 4

    (anomaly,) = aggregator.anomalies(1)
    assert anomaly.participant == attacker and f"rule {anomaly.rule}" in anomaly.reason
    assert anomaly.deviation is not None
    # the attacker sends -10x an honest update: the norm bound fires first, and names the ratio
    assert anomaly.rule == "norm-bound" and "times the round's median" in anomaly.reason
    ratio = float(anomaly.reason.split("norm ")[1].split(" times")[0])
    assert ratio > Rules().detector_max_norm_ratio
    for update in aggregator.updates(1):  # every verdict records its rule and the evidence the rule compared
        assert update.threshold == anomaly.threshold and update.deviation is not None
        assert update.similarity is not None and update.similarity <= Rules().detector_max_similarity
        assert update.rule == (anomaly.rule if update.participant == attacker else "within-limits")
    assert "sketch" not in anomaly.features and anomaly.features["l2_norm"] > 0

    trust = {p.id: p.trust for p in aggregator.participants()}
    assert trust[attacker] < 0.8 < trust[participant_id("Org1MSP", "trainer0")]

    balances = aggregator.balances()
    assert sum(balances.values()) == finalized.reward_pool
    assert balances[attacker] == 0
    # Org2's trainers hold more samples (240 vs 220) but no organisation gets more than half (the default cap);
    # within an organisation, more samples earn more (trust was equal at submit time)
    accepted = [u for u in aggregator.updates(1) if u.status == "accepted"]
    for org in ("Org1MSP", "Org2MSP"):
        mine = sorted((u.samples, balances[u.participant], u.weight) for u in accepted if u.participant.startswith(org))
        assert sum(b for _, b, _ in mine) == finalized.reward_pool // 2
        assert sum(w for _, _, w in mine) == 500_000
        assert [b for _, b, _ in mine] == sorted(b for _, b, _ in mine)


def test_finalize_preconditions(consortium, updates):
    aggregator, trainers, _ = ready_round(consortium, trainers=2, rules={"min_participants_per_round": 2})
    trainers[0].submit_update(1, updates.bytes(), samples=10, privacy=dp(1.0), train_loss=0.3)
    before = world(aggregator)
    with pytest.raises(FailedPrecondition, match="open until"):
        aggregator.finalize_round(1)
    with pytest.raises(PermissionDenied):
        trainers[0].finalize_round(1)
    with pytest.raises(NotFound):
        aggregator.finalize_round(5)
    consortium.advance(4000)  # past the deadline: finalize may close implicitly, but only 1 of 2 updates
    with pytest.raises(FailedPrecondition, match="AbandonRound"):
        aggregator.finalize_round(1)
    assert world(aggregator) == before
    assert aggregator.abandon_round(1, "too few updates").status == "abandoned"


def test_small_rounds_are_accepted_without_detection(consortium, updates):
    aggregator, trainers, _ = ready_round(consortium, trainers=3, rules={"detector_min_updates": 4})
    for trainer in trainers:
        trainer.submit_update(1, updates.bytes(), samples=10, privacy=dp(1.0), train_loss=0.3)
    aggregator.close_round(1)
    finalized = aggregator.finalize_round(1)
    assert len(finalized.accepted) == 3
    assert all("without detection" in u.reason for u in aggregator.updates(1))


def test_commit_aggregate_must_use_exactly_the_accepted_set(consortium, updates):
    aggregator, _, genesis, finalized = attacked_round(consortium, updates)
    by_participant = {u.participant: u.hash for u in aggregator.updates(1)}
    accepted = [by_participant[p] for p in finalized.accepted]
    rejected = [by_participant[p] for p in finalized.rejected]
    model, _ = honest_aggregate(aggregator, 1)  # the peers recompute it: only the real aggregate is accepted
    before = world(aggregator)
    for wrong in (accepted[:-1], accepted + rejected, accepted + accepted[:1], [], accepted[:-1] + rejected):
        with pytest.raises(InvalidArgument, match="exactly the 4 accepted updates"):
            aggregator.contract.submit("CommitAggregate", arguments=[1, json.dumps(wrong)], transient={"model": model})
    with pytest.raises(InvalidArgument, match="has shape"):
        commit_round(aggregator, 1, model=tensors_bytes({k: v[:2] for k, v in updates.honest().items()}))
    with pytest.raises(InvalidArgument, match="metrics must be JSON"):
        aggregator.contract.submit(
            "CommitAggregate",
            arguments=[1, json.dumps(accepted), '{"accuracy": NaN}'],
            transient={"model": model},
        )
    assert world(aggregator) == before

    committed = commit_round(aggregator, 1, model=model, update_hashes=accepted, metrics={"accuracy": 0.91})
    assert (committed.version, committed.parent, committed.round) == (1, genesis, 1)
    assert sorted(u["hash"] for u in committed.updates) == sorted(accepted)
    assert committed.metrics == {"accuracy": 0.91}
    assert aggregator.round(1).status == "aggregated" and aggregator.round(1).aggregate == committed.hash
    assert [m.version for m in aggregator.lineage(committed.hash)] == [1, 0]
    assert aggregator.latest_model() == committed
    with pytest.raises(FailedPrecondition, match="is aggregated"):
        commit_round(aggregator, 1, model=model, update_hashes=accepted)


def test_lineage_over_three_rounds(consortium, updates):
    aggregator, trainers, genesis = ready_round(consortium, trainers=2, rules={"min_participants_per_round": 2})
    base = genesis
    for number in (1, 2, 3):
        if number > 1:
            aggregator.open_round(number, base_model=base, deadline=consortium.now() + 600)
        for trainer in trainers:
            trainer.submit_update(number, updates.bytes(), samples=50, privacy=dp(1.0), train_loss=0.4)
        aggregator.close_round(number)
        aggregator.finalize_round(number)
        base = commit_round(aggregator, number).hash
    chain = aggregator.lineage(base)
    assert [m.version for m in chain] == [3, 2, 1, 0]
    assert [m.round for m in chain] == [3, 2, 1, None]
    assert all(child.parent == parent.hash for child, parent in itertools.pairwise(chain))
    assert sum(aggregator.balances().values()) == 3 * aggregator.rules().reward_per_round


def test_repeated_rejections_suspend_a_participant(consortium, updates):
    aggregator, trainers, genesis, _ = attacked_round(consortium, updates)
    attacker = participant_id("Org1MSP", "trainer4")
    base = genesis
    for number in (2, 3):
        base = commit_round(aggregator, number - 1).hash
        aggregator.open_round(number, base_model=base, deadline=consortium.now() + 600)
        for i, trainer in enumerate(trainers):
            tensors = updates.honest()
            if i == 4:
                tensors = {k: -10 * v for k, v in tensors.items()}
            trainer.submit_update(number, tensors_bytes(tensors), samples=100, privacy=dp(1.0), train_loss=0.5)
        aggregator.close_round(number)
        aggregator.finalize_round(number)
    participant = aggregator.participant(attacker)
    assert participant.rejected_count == 3
    assert participant.status == "suspended" and participant.auto_suspended
    assert "trust" in participant.status_reason
    assert len(aggregator.anomalies()) == 3


def test_events_reach_subscribers_and_resume_from_a_block(consortium, updates):
    aggregator, _trainers, _ = ready_round(consortium, trainers=2)
    seen = []
    with aggregator.events(start_block=0) as stream:
        for event in stream:
            seen.append((event.name, event.block_number))
            if event.name == "RoundOpened":
                break
    assert [name for name, _ in seen] == [
        "ConsortiumInitialised",
        "ProposalOpened",  # the aggregator role, proposed by Org1
        "ProposalApplied",  # and approved by Org2
        "ParticipantRegistered",
        "GenesisModelRegistered",
        "TrainerEnrolled",
        "ParticipantRegistered",
        "TrainerEnrolled",
        "ParticipantRegistered",
        "RoundOpened",
    ]
    opened = seen[-1][1]
    assert opened > seen[-2][1]
    with aggregator.events(start_block=opened) as stream:
        first = next(iter(stream))
    assert first.block_number == opened and first.name == "RoundOpened"
    assert b'"round":1' in first.payload


def test_second_round_screens_against_the_previous_global_direction(consortium, updates):
    """FinalizeRound derives the previous direction from round 1's accepted sketches; a norm-matched sign flip
    (same norm as the honest updates, opposite direction) is rejected in round 2 with an informative reason."""
    aggregator, trainers, _ = ready_round(consortium, rules={"detector_min_updates": 4})
    for trainer in trainers:
        trainer.submit_update(1, updates.bytes(), samples=100, privacy=dp(1.0), train_loss=0.5)
    aggregator.close_round(1)
    first = aggregator.finalize_round(1)
    assert first.direction_round is None and len(first.accepted) == 5
    base = commit_round(aggregator, 1).hash

    aggregator.open_round(2, base_model=base, deadline=consortium.now() + 600)
    for i, trainer in enumerate(trainers):
        tensors = updates.honest()
        if i == 4:
            tensors = {k: -v for k, v in tensors.items()}
        trainer.submit_update(2, tensors_bytes(tensors), samples=100, privacy=dp(1.0), train_loss=0.5)
    aggregator.close_round(2)
    second = aggregator.finalize_round(2)
    attacker = participant_id("Org1MSP", "trainer4")
    assert second.direction_round == 1
    assert second.rejected == [attacker] and len(second.accepted) == 4
    (anomaly,) = aggregator.anomalies(2)
    assert "distance" in anomaly.reason and "robust deviations" in anomaly.reason
    assert anomaly.features["samples"] == 100

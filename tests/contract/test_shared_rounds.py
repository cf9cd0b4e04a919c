"""Secret-shared rounds on the ledger: commitments at SubmitUpdate, per-organisation sketches and sums, the
aggregate as the sum of the organisations' sums; every refusal leaves the ledger as it was."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger import shares
from fedledger.anomaly.features import SKETCH_BLOCKS, count_sketch, decode_sketch
from fedledger.chaincode.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    RuleViolation,
)
from fedledger.chaincode.share_protocol import seed_number
from fedledger.tensors import decode, encode, sha256_hex

from ..shares_support import MANIFEST, ORGS, organisation_joins, shared_round, submit_round
from ..support import EmbeddedLedgerConsortium, change_rules, dp, participant_id, world, zero_model


def test_a_shared_round_screens_sums_and_commits_without_anyone_sending_an_update(consortium, updates):
    run = shared_round(consortium)
    record = run.aggregator.round(1)
    assert [h["org"] for h in record.share_holders] == list(ORGS) and record.share_scale == 32
    assert record.sketch_seed == ""  # not before every share is committed
    submit_round(run, updates)
    on_chain = run.aggregator.updates(1)
    assert all(len(u.share_commitments) == 2 and u.features == {} and u.size == 0 for u in on_chain)
    closed = run.aggregator.close_round(1)
    assert len(closed.sketch_seed) == 64
    run.sketch_all(1)
    finalized = run.aggregator.finalize_round(1)
    attacker = participant_id("Org1MSP", "trainer4")
    assert finalized.rejected == [attacker]
    judged = {u.participant: u for u in run.aggregator.updates(1)}
    for pid, update in run.sent.items():  # the summed share sketches are the update's count sketch
        expected = count_sketch(update, 512, seed=seed_number(closed.sketch_seed), blocks=SKETCH_BLOCKS)
        np.testing.assert_allclose(decode_sketch(judged[pid].features["sketch"]), expected, rtol=1e-5, atol=1e-6)
    base = zero_model()
    model, model_bytes = run.commit(1, base)
    assert model.hash == sha256_hex(model_bytes) and model.round == 1
    assert run.aggregator.round(1).status == "aggregated"
    accepted = [u for u in judged.values() if u.status == "accepted"]
    plain = sum(run.sent[u.participant]["layer.0.lora_A"].astype(np.float64) * u.weight for u in accepted)
    plain = plain / sum(u.weight for u in accepted)
    np.testing.assert_allclose(decode(model_bytes)["layer.0.lora_A"], plain, rtol=0, atol=1e-6)
    assert {p.org: bool(p.sum_hash) for p in run.aggregator.org_shares(1)} == dict.fromkeys(ORGS, True)


def test_the_update_itself_and_wrong_commitments_are_refused_and_nothing_changes(consortium, updates):
    run = shared_round(consortium)
    trainer = run.trainers[0]
    before = world(run.aggregator)
    with pytest.raises(InvalidArgument, match="secret-shared"):
        trainer.submit_update(1, updates.bytes(), samples=100, privacy=dp(1.0), train_loss=0.4)
    with pytest.raises(InvalidArgument, match="2 share holders"):
        trainer.submit_shared_update(1, ["ab" * 32], samples=100, privacy=dp(1.0), train_loss=0.4)
    with pytest.raises(InvalidArgument, match="hex SHA-256"):
        trainer.submit_shared_update(1, ["ab" * 32, "nothex"], samples=100, privacy=dp(1.0), train_loss=0.4)
    assert world(run.aggregator) == before


def test_holders_act_only_at_their_step_and_only_with_their_committed_shares(consortium, updates):
    run = shared_round(consortium)
    submit_round(run, updates)
    pids = [u.participant for u in run.aggregator.updates(1)]
    with pytest.raises(FailedPrecondition, match="still open"):
        run.admins["Org1MSP"].submit_share_sketches(1, "Org1MSP", run.opened(1, "Org1MSP", pids))
    run.aggregator.close_round(1)
    before = world(run.aggregator), run.aggregator.org_shares(1)
    mine = run.opened(1, "Org1MSP", pids)
    theirs = run.opened(1, "Org2MSP", pids)
    tampered = dict(mine, **{pids[0]: mine[pids[0]][:-8] + bytes(8)})
    with pytest.raises(InvalidArgument, match="is refused"):
        run.admins["Org1MSP"].submit_share_sketches(1, "Org1MSP", tampered)
    with pytest.raises(InvalidArgument, match="is refused"):  # another organisation's share: not its commitment
        run.admins["Org1MSP"].submit_share_sketches(1, "Org1MSP", theirs)
    with pytest.raises(InvalidArgument, match="no 'share/"):
        run.admins["Org1MSP"].submit_share_sketches(1, "Org1MSP", {pids[0]: mine[pids[0]]})
    with pytest.raises(PermissionDenied, match="not the admin"):
        run.trainers[0].submit_share_sketches(1, "Org1MSP", mine)
    with pytest.raises(FailedPrecondition, match="waits for the share sketches of Org1MSP, Org2MSP"):
        run.aggregator.finalize_round(1)
    assert (world(run.aggregator), run.aggregator.org_shares(1)) == before
    run.admins["Org1MSP"].submit_share_sketches(1, "Org1MSP", mine)
    with pytest.raises(AlreadyExists):
        run.admins["Org1MSP"].submit_share_sketches(1, "Org1MSP", mine)
    # Org2 is down: the round waits, then resumes when it is back
    with pytest.raises(FailedPrecondition, match="waits for the share sketches of Org2MSP"):
        run.aggregator.finalize_round(1)
    run.admins["Org2MSP"].submit_share_sketches(1, "Org2MSP", theirs)
    assert run.aggregator.finalize_round(1).status == "finalized"


def test_a_share_that_does_not_open_rejects_that_update_and_names_the_organisation(consortium, updates):
    run = shared_round(consortium)
    submit_round(run, updates, attacker_scale=None)
    run.aggregator.close_round(1)
    pids = [u.participant for u in run.aggregator.updates(1)]
    bad = pids[1]
    opened = run.opened(1, "Org2MSP", [p for p in pids if p != bad])
    run.admins["Org2MSP"].submit_share_sketches(1, "Org2MSP", opened, refused={bad: "the share does not open"})
    run.admins["Org1MSP"].submit_share_sketches(1, "Org1MSP", run.opened(1, "Org1MSP", pids))
    finalized = run.aggregator.finalize_round(1)
    assert finalized.rejected == [bad]
    anomaly = next(a for a in run.aggregator.anomalies(1) if a.participant == bad)
    assert anomaly.rule == "share-refused" and "Org2MSP: the share does not open" in anomaly.reason
    owner = next(t for t in run.trainers if t.whoami()["id"] == bad)
    before = world(run.aggregator)
    with pytest.raises(FailedPrecondition, match="no vote can make it aggregatable"):
        owner.open_dispute(1, bad, "my share was fine")
    assert world(run.aggregator) == before


def test_an_update_over_the_norm_bound_is_rejected_from_its_summed_sketch(consortium, updates):
    run = shared_round(consortium, rules={"max_update_norm": 1.0})
    submit_round(run, updates, attacker_scale=500.0)
    run.aggregator.close_round(1)
    run.sketch_all(1)
    attacker = participant_id("Org1MSP", "trainer4")
    assert run.aggregator.finalize_round(1).rejected == [attacker]
    assert run.aggregator.update(1, attacker).rule == "update-norm-bound"


def test_the_aggregate_must_be_the_sum_of_the_recorded_organisation_sums(consortium, updates):
    run = shared_round(consortium)
    submit_round(run, updates)
    run.aggregator.close_round(1)
    run.sketch_all(1)
    run.aggregator.finalize_round(1)
    base = zero_model()
    hashes = [u.hash for u in run.aggregator.updates(1) if u.status == "accepted"]
    with pytest.raises(FailedPrecondition, match="waits for the share sums of Org1MSP, Org2MSP"):
        run.aggregator.commit_shared_aggregate(1, base, base=base, sums={}, update_hashes=hashes)
    sums = run.sum_all(1)
    model = run.model_of(1, sums, base)
    before = world(run.aggregator), run.aggregator.org_shares(1)
    forged = dict(sums, Org2MSP=sums["Org2MSP"][:-8] + bytes(8))
    with pytest.raises(InvalidArgument, match="not Org2MSP's share sum"):
        run.aggregator.commit_shared_aggregate(1, model, base=base, sums=forged, update_hashes=hashes)
    other = encode({k: v + 0.5 for k, v in decode(model).items()}, like=MANIFEST)
    with pytest.raises(RuleViolation, match="is not the aggregate"):
        run.aggregator.commit_shared_aggregate(1, other, base=base, sums=sums, update_hashes=hashes)
    with pytest.raises(InvalidArgument, match="exactly the"):
        run.aggregator.commit_shared_aggregate(1, model, base=base, sums=sums, update_hashes=hashes[1:])
    with pytest.raises(AlreadyExists):
        run.admins["Org1MSP"].submit_share_sum(1, "Org1MSP", {})
    assert (world(run.aggregator), run.aggregator.org_shares(1)) == before
    assert run.aggregator.commit_shared_aggregate(1, model, base=base, sums=sums, update_hashes=hashes).round == 1


def test_the_next_round_uses_a_new_seed_and_the_previous_direction_from_the_sums(consortium, updates):
    run = shared_round(consortium)
    submit_round(run, updates)
    first = run.aggregator.close_round(1)
    run.sketch_all(1)
    run.aggregator.finalize_round(1)
    sums = run.sum_all(1)
    model, _model_bytes = run.commit(1, zero_model(), sums)
    run.aggregator.open_round(2, base_model=model.hash, deadline=run.aggregator.round(1).deadline + 10)
    submit_round(run, updates, number=2)
    second = run.aggregator.close_round(2)
    assert second.sketch_seed != first.sketch_seed
    pids = [u.participant for u in run.aggregator.updates(2)]
    with pytest.raises(InvalidArgument, match="'previous'"):
        run.admins["Org1MSP"].submit_share_sketches(2, "Org1MSP", run.opened(2, "Org1MSP", pids))
    run.sketch_all(2, previous=sums)
    finalized = run.aggregator.finalize_round(2)
    assert finalized.direction_round == 1


def test_without_two_share_keys_or_with_sharing_off_rounds_stay_plaintext(consortium, updates):
    run = shared_round(consortium, keys=False)
    assert run.aggregator.round(1).share_holders == []
    run.trainers[0].submit_update(1, updates.bytes(), samples=100, privacy=dp(1.0), train_loss=0.4)
    with pytest.raises(FailedPrecondition, match="not secret-shared"):
        run.admins["Org1MSP"].submit_share_sketches(1, "Org1MSP", {})


def test_share_keys_are_registered_by_organisation_admins_only(consortium):
    run = shared_round(consortium, keys=False)
    key = shares.generate_key()
    before = world(run.aggregator), run.aggregator.share_keys()
    with pytest.raises(PermissionDenied):
        run.trainers[0].register_share_key(shares.public_key_pem(key))
    with pytest.raises(InvalidArgument, match="X25519 public key"):
        run.admins["Org1MSP"].register_share_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    assert (world(run.aggregator), run.aggregator.share_keys()) == before
    record = run.admins["Org1MSP"].register_share_key(shares.public_key_pem(key))
    assert record.org == "Org1MSP" and record.key_id == shares.key_id(key)
    with pytest.raises(AlreadyExists):
        run.admins["Org1MSP"].register_share_key(shares.public_key_pem(key))
    assert [k.org for k in run.aggregator.share_keys()] == ["Org1MSP"]


@pytest.fixture
def three_orgs(tmp_path):
    """An embedded consortium whose CAs issue Org1, Org2 and Org3 identities (Org3 joins later)."""
    orgs = {"Org1MSP": "org1.example.com", "Org2MSP": "org2.example.com", "Org3MSP": "org3.example.com"}
    network = EmbeddedLedgerConsortium(tmp_path / "three", orgs)
    yield network
    network.close()


def test_an_organisation_that_joins_holds_shares_from_the_next_round_on(three_orgs, updates):
    run = shared_round(three_orgs)
    organisation_joins(
        run, three_orgs, updates, lambda: change_rules(three_orgs, {"member_msps": ["Org1MSP", "Org2MSP", "Org3MSP"]})
    )


def test_a_share_key_is_not_replaced_while_a_round_holds_shares_sealed_to_it(consortium, updates):
    run = shared_round(consortium)
    submit_round(run, updates)
    before = world(run.aggregator), run.aggregator.share_keys()
    with pytest.raises(FailedPrecondition, match="round 1 is open and holds shares sealed to Org2MSP's key"):
        run.admins["Org2MSP"].register_share_key(shares.public_key_pem(shares.generate_key()))
    assert (world(run.aggregator), run.aggregator.share_keys()) == before
    run.aggregator.abandon_round(1, "rotating a share key")
    replaced = run.admins["Org2MSP"].register_share_key(shares.public_key_pem(shares.generate_key()))
    assert replaced.key_id != run.aggregator.round(1).share_holders[1]["key_id"]

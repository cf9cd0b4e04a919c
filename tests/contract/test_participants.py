"""Roles granted, not claimed: EnrolTrainer, ProposeRole / ProposeRevocation / ApproveProposal,
RegisterParticipant, SuspendParticipant / ReinstateParticipant, and whitewashing."""

from __future__ import annotations

import pytest

from fedledger.chaincode.embedded.msp import add_user, create_organization
from fedledger.chaincode.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied
from fedledger.identity import Identity, load_msp_identity
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.errors import EndorseError

from ..sdk_fabric.certs import issue_client_identity
from ..support import SCHEMA, common_name, dp, enrol, grant, participant_id, ready_round, world


@pytest.fixture
def admin(consortium):
    client = consortium.admin()
    client.init_consortium({"member_msps": ["Org1MSP", "Org2MSP"], "min_samples_per_update": 10})
    return client


def unchanged(consortium, client):
    """world() and the ledger underneath (height and raw state, or the blocks): equal means nothing was written."""
    return world(client), consortium.ledger_state()


def test_identity_comes_from_the_certificate(consortium, admin):
    participant = enrol(consortium, "Org2MSP", "hospital-a", dataset_size=500).participant(
        participant_id("Org2MSP", "hospital-a")
    )
    assert participant.id == "Org2MSP:hospital-a@org2.example.com"
    assert (participant.mspid, participant.role, participant.status) == ("Org2MSP", "trainer", "active")
    assert len(participant.cert_fingerprint) == 64
    assert participant.trust == pytest.approx(0.8)
    assert (participant.dataset_size, participant.approved_by) == (500, ["Org2MSP:Admin@org2.example.com"])
    assert admin.participant(participant.id) == participant


def test_roles_are_not_self_assigned(consortium, admin):
    """The attack: any member identity registers itself as aggregator (and would then commit any model)."""
    mallory = consortium.client("Org1MSP", "mallory")
    before = unchanged(consortium, admin)
    for role, message in (
        ("aggregator", "holds no aggregator grant.*approval of 2 member organisations"),
        ("auditor", "holds no auditor grant"),
        ("trainer", "not enrolled as a trainer.*EnrolTrainer"),
    ):
        with pytest.raises(PermissionDenied, match=message):
            mallory.register(role)
    assert unchanged(consortium, admin) == before


def test_an_aggregator_needs_a_quorum_of_organisations(consortium, admin):
    org2 = consortium.admin("Org2MSP")
    candidate = participant_id("Org1MSP", "aggregator")
    proposal = admin.propose_role(candidate, "aggregator")
    assert (proposal.status, proposal.approvals) == ("open", ["Org1MSP"])
    client = consortium.client("Org1MSP", "aggregator")
    before = unchanged(consortium, admin)
    with pytest.raises(PermissionDenied, match="holds no aggregator grant"):
        client.register("aggregator")  # its own organisation's approval alone is not enough
    with pytest.raises(AlreadyExists, match="Org1MSP already approved"):
        admin.approve(proposal.id)
    with pytest.raises(AlreadyExists, match="already proposes this"):
        org2.propose_role(candidate, "aggregator")
    with pytest.raises(PermissionDenied, match="not the admin of a member"):
        consortium.client("Org2MSP", "trainer1").approve(proposal.id)
    assert unchanged(consortium, admin) == before
    assert org2.approve(proposal.id).status == "applied"
    registered = client.register("aggregator")
    assert (registered.role, registered.approved_by) == ("aggregator", ["Org1MSP", "Org2MSP"])
    assert [p.status for p in admin.proposals()] == ["applied"]


def test_a_trainer_is_enrolled_by_its_own_admin_who_attests_its_dataset(consortium, admin):
    org2 = consortium.admin("Org2MSP")
    enrolment = org2.enrol_trainer("hospital-b@org2.example.com", dataset_size=300, schema_hash=SCHEMA)
    assert (enrolment.participant, enrolment.enrolled_by) == (
        "Org2MSP:hospital-b@org2.example.com",
        "Org2MSP:Admin@org2.example.com",
    )
    before = unchanged(consortium, admin)
    for caller, args, error, message in (
        (consortium.client("Org2MSP", "trainer1"), ("x", 300, SCHEMA), PermissionDenied, "not the admin of a member"),
        (org2, ("x", "lots", SCHEMA), InvalidArgument, "dataset_size must be an integer"),
        (org2, ("x", 5, SCHEMA), InvalidArgument, "dataset_size must be >= 10"),
        (org2, ("x", 300, "abc"), InvalidArgument, "schema_hash must be a hex SHA-256"),
        (org2, ("", 300, SCHEMA), InvalidArgument, "common name is required"),
    ):
        with pytest.raises(error, match=message):
            caller.enrol_trainer(args[0], dataset_size=args[1], schema_hash=args[2])
    with pytest.raises(InvalidArgument, match="role must be one of"):
        consortium.client("Org2MSP", "hospital-b").register("banker")
    assert unchanged(consortium, admin) == before
    # an admin can only enrol its own organisation's identities: Org1's admin enrolling the same name makes
    # an Org1 enrolment, and Org2's identity is still only what Org2's admin attested
    admin.enrol_trainer("hospital-b@org2.example.com", dataset_size=10**9, schema_hash=SCHEMA)
    trainer = consortium.client("Org2MSP", "hospital-b").register("trainer")
    assert trainer.dataset_size == 300
    # re-attestation follows on the registered trainer
    org2.enrol_trainer("hospital-b@org2.example.com", dataset_size=250, schema_hash=SCHEMA)
    assert admin.participant(trainer.id).dataset_size == 250


def test_duplicate_registration_is_refused(consortium, admin):
    client = enrol(consortium, "Org1MSP", "trainer0", dataset_size=100)
    before = unchanged(consortium, admin)
    with pytest.raises(AlreadyExists, match="already registered"):
        client.register("trainer")
    with pytest.raises(FailedPrecondition, match="one identity holds one role"):
        admin.propose_role(participant_id("Org1MSP", "trainer0"), "auditor")
    assert unchanged(consortium, admin) == before


def test_organisation_outside_the_consortium_cannot_register(consortium, tmp_path):
    admin = consortium.admin()
    admin.init_consortium({"member_msps": ["Org1MSP"]})
    before = world(admin)
    with pytest.raises(PermissionDenied, match="not a consortium member"):
        consortium.client("Org2MSP", "trainer0").register("trainer")
    with pytest.raises(PermissionDenied, match="not the admin of a member"):
        consortium.admin("Org2MSP").enrol_trainer("trainer0@org2.example.com", dataset_size=100, schema_hash=SCHEMA)
    assert world(admin) == before


def test_identity_from_an_unknown_ca_is_refused_by_the_ledger(consortium, admin, tmp_path):
    rogue = create_organization(tmp_path / "rogue", "Org1MSP", "org1.example.com")  # same MSP ID, other CA
    client = consortium.connect(*load_msp_identity(add_user(rogue, "mallory"), "Org1MSP"))
    codes, message = consortium.REFUSED_CREATOR
    before = world(admin)
    with pytest.raises(EndorseError, match=message) as info:
        client.register("trainer")
    assert info.value.code in codes
    assert world(admin) == before


def certified_by(consortium, mspid: str, common_name: str, folder) -> FedLedgerClient:
    """A client whose certificate ``mspid``'s own CA issued for any common name, with a new key."""
    msp = issue_client_identity(consortium.issuer(mspid).path / "ca", folder, common_name)
    return consortium.connect(*load_msp_identity(msp, mspid))


def test_a_member_of_one_org_cannot_act_as_a_participant_of_another(consortium, admin, tmp_path):
    enrol(consortium, "Org1MSP", "trainer0", dataset_size=100)
    victim = participant_id("Org1MSP", "trainer0")
    record = admin.participant(victim)
    before, ledger_before = world(admin), consortium.ledger_state()

    # Org2's certificate presented under Org1MSP: the ledger's MSP check refuses it before any contract runs
    org2_identity, org2_signer = consortium.identity("Org2MSP", "trainer0")
    claims_org1 = consortium.connect(Identity("Org1MSP", org2_identity.cert_pem), org2_signer)
    codes, message = consortium.REFUSED_CREATOR
    for act in (lambda: claims_org1.register("trainer"), claims_org1.whoami):
        with pytest.raises(EndorseError, match=message) as info:
            act()
        assert info.value.code in codes

    # A certificate of Org1's CA with the victim's name but another key: the contract keys by certificate
    twin = certified_by(consortium, "Org1MSP", "trainer0@org1.example.com", tmp_path / "twin")
    with pytest.raises(PermissionDenied, match="does not match the one it registered with"):
        twin.submit_update(1, b"x", samples=10, privacy=dp(1.0), train_loss=0.1)
    assert world(admin) == before and consortium.ledger_state() == ledger_before

    # Org2's CA certifying Org1's name makes an Org2 participant, never Org1's
    impostor = certified_by(consortium, "Org2MSP", "trainer0@org1.example.com", tmp_path / "impostor")
    consortium.admin("Org2MSP").enrol_trainer("trainer0@org1.example.com", dataset_size=100, schema_hash=SCHEMA)
    assert impostor.register("trainer").id == "Org2MSP:trainer0@org1.example.com"
    with pytest.raises(PermissionDenied, match="not the admin of a member"):
        impostor.suspend(victim, "taking over")
    assert admin.participant(victim) == record


def test_suspend_and_reinstate_by_admin(consortium, admin):
    enrol(consortium, "Org1MSP", "trainer0", dataset_size=100)
    pid = participant_id("Org1MSP", "trainer0")
    suspended = admin.suspend(pid, "audit pending")
    assert suspended.status == "suspended" and "audit pending" in suspended.status_reason
    with pytest.raises(FailedPrecondition, match="already suspended"):
        admin.suspend(pid, "again")
    reinstated = admin.reinstate(pid, "audit passed")
    assert reinstated.status == "active"
    assert [h["value"]["status"] for h in admin.history("participant", pid)] == ["active", "suspended", "active"]


def test_suspend_by_non_admin_or_without_reason_changes_nothing(consortium, admin):
    trainer = enrol(consortium, "Org1MSP", "trainer0", dataset_size=100)
    pid = participant_id("Org1MSP", "trainer0")
    before = world(admin)
    with pytest.raises(PermissionDenied):
        trainer.suspend(pid, "I don't like myself")
    with pytest.raises(PermissionDenied, match="administers Org2MSP, not Org1MSP.*ProposeRevocation"):
        consortium.admin("Org2MSP").suspend(pid, "a competitor")
    with pytest.raises(InvalidArgument, match="reason is required"):
        admin.suspend(pid, "   ")
    with pytest.raises(EndorseError, match="does not exist"):
        admin.suspend("Org1MSP:nobody@org1.example.com", "unknown")
    assert world(admin) == before


def test_revocation_by_quorum_and_of_a_trainer_by_its_own_organisation(consortium, admin):
    org2 = consortium.admin("Org2MSP")
    aggregator = grant(consortium, "Org1MSP", "aggregator", "aggregator")
    trainer = enrol(consortium, "Org1MSP", "trainer0", dataset_size=100)
    pid = participant_id("Org1MSP", "trainer0")

    # another organisation alone cannot remove Org1's trainer: the proposal waits for a quorum
    pending = org2.propose_revocation(pid, "we suspect it")
    assert pending.status == "open" and admin.participant(pid).status == "active"
    # its own organisation can (and that completes the pending proposal too)
    assert admin.approve(pending.id).status == "applied"
    assert admin.participant(pid).status == "revoked"
    with pytest.raises(PermissionDenied, match="revoked"):
        trainer.submit_update(1, b"x", samples=10, privacy=dp(1.0), train_loss=0.1)
    with pytest.raises(FailedPrecondition, match="revoked.*enrol a new identity"):
        admin.enrol_trainer(common_name("Org1MSP", "trainer0"), dataset_size=100, schema_hash=SCHEMA)

    # the aggregator's own organisation alone cannot revoke it (nor keep it): a quorum decides
    revoke = admin.propose_revocation(aggregator.whoami()["id"], "committed a wrong model")
    assert revoke.status == "open"
    assert org2.approve(revoke.id).status == "applied"
    with pytest.raises(PermissionDenied, match="revoked"):
        aggregator.open_round(1, base_model="ab" * 32, deadline=consortium.now() + 60)


def test_a_whitewashed_member_inherits_its_organisations_rejections(consortium, updates):
    """The attack: a member suspended for rejected updates comes back under a new name with fresh trust."""
    aggregator, trainers, _ = ready_round(
        consortium, rules={"detector_min_updates": 4, "trust_suspend_below": 0.6, "min_samples_per_update": 1}
    )
    for i, trainer in enumerate(trainers):
        tensors = updates.honest()
        if i == 4:
            tensors = {k: -10 * v for k, v in tensors.items()}
        trainer.submit_update(1, updates.bytes(tensors), samples=100, privacy=dp(1.0), train_loss=0.5)
    aggregator.close_round(1)
    assert aggregator.finalize_round(1).rejected == [participant_id("Org1MSP", "trainer4")]
    assert consortium.admin().participant(participant_id("Org1MSP", "trainer4")).status == "suspended"

    fresh = enrol(consortium, "Org1MSP", "trainer4-new")
    record = fresh.participant(participant_id("Org1MSP", "trainer4-new"))
    assert (record.inherited_rejected, record.status) == (1, "suspended")
    assert record.trust == consortium.admin().participant(participant_id("Org1MSP", "trainer4")).trust
    assert "inherits 1 rejections" in record.status_reason
    # another organisation's new member starts clean
    assert enrol(consortium, "Org2MSP", "newcomer").participant(participant_id("Org2MSP", "newcomer")).trust == 0.8
    # bringing it back is its admin's explicit, recorded act
    back = consortium.admin().reinstate(record.id, "re-trained on audited data")
    assert back.status == "active" and "Admin@org1.example.com" in back.status_reason
    assert [h["value"]["status"] for h in consortium.admin().history("participant", record.id)] == [
        "suspended",
        "active",
    ]

"""RegisterParticipant / SuspendParticipant / ReinstateParticipant."""

from __future__ import annotations

import pytest

from fedledger.chaincode.embedded.msp import add_user, create_organization
from fedledger.chaincode.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied
from fedledger.identity import Identity, load_msp_identity
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.errors import EndorseError

from ..sdk_fabric.certs import issue_client_identity
from ..support import SCHEMA, participant_id, world


@pytest.fixture
def admin(consortium):
    client = consortium.admin()
    client.init_consortium({"member_msps": ["Org1MSP", "Org2MSP"], "min_samples_per_update": 10})
    return client


def test_identity_comes_from_the_certificate(consortium, admin):
    participant = consortium.client("Org2MSP", "hospital-a").register("trainer", dataset_size=500, schema_hash=SCHEMA)
    assert participant.id == "Org2MSP:hospital-a@org2.example.com"
    assert (participant.mspid, participant.role, participant.status) == ("Org2MSP", "trainer", "active")
    assert len(participant.cert_fingerprint) == 64
    assert participant.trust == pytest.approx(0.8)
    assert admin.participant(participant.id) == participant


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("banker", 100, SCHEMA), InvalidArgument, "role must be one of"),
        (("trainer", "lots", SCHEMA), InvalidArgument, "dataset_size must be an integer"),
        (("trainer", 5, SCHEMA), InvalidArgument, "at least 10 samples"),
        (("trainer", 100, "abc"), InvalidArgument, "schema_hash must be a hex SHA-256"),
    ],
)
def test_bad_registrations_change_nothing(consortium, admin, args, error, message):
    before = world(admin)
    role, size, schema = args
    with pytest.raises(error, match=message):
        consortium.client("Org1MSP", "trainer0").register(role, dataset_size=size, schema_hash=schema)
    assert world(admin) == before


def test_duplicate_registration_is_refused(consortium, admin):
    client = consortium.client("Org1MSP", "trainer0")
    client.register("trainer", dataset_size=100, schema_hash=SCHEMA)
    before = world(admin)
    with pytest.raises(AlreadyExists, match="already registered"):
        client.register("auditor", dataset_size=0, schema_hash=SCHEMA)
    assert world(admin) == before


def test_organisation_outside_the_consortium_cannot_register(consortium, tmp_path):
    admin = consortium.admin()
    admin.init_consortium({"member_msps": ["Org1MSP"]})
    before = world(admin)
    with pytest.raises(PermissionDenied, match="not a consortium member"):
        consortium.client("Org2MSP", "trainer0").register("trainer", dataset_size=100, schema_hash=SCHEMA)
    assert world(admin) == before


def test_identity_from_an_unknown_ca_is_refused_by_the_ledger(consortium, admin, tmp_path):
    rogue = create_organization(tmp_path / "rogue", "Org1MSP", "org1.example.com")  # same MSP ID, other CA
    client = consortium.connect(*load_msp_identity(add_user(rogue, "mallory"), "Org1MSP"))
    codes, message = consortium.REFUSED_CREATOR
    before = world(admin)
    with pytest.raises(EndorseError, match=message) as info:
        client.register("trainer", dataset_size=100, schema_hash=SCHEMA)
    assert info.value.code in codes
    assert world(admin) == before


def certified_by(consortium, mspid: str, common_name: str, folder) -> FedLedgerClient:
    """A client whose certificate ``mspid``'s own CA issued for any common name, with a new key."""
    msp = issue_client_identity(consortium.issuer(mspid).path / "ca", folder, common_name)
    return consortium.connect(*load_msp_identity(msp, mspid))


def test_a_member_of_one_org_cannot_act_as_a_participant_of_another(consortium, admin, tmp_path):
    org1 = consortium.client("Org1MSP", "trainer0")
    org1.register("trainer", dataset_size=100, schema_hash=SCHEMA)
    victim = participant_id("Org1MSP", "trainer0")
    record = admin.participant(victim)
    before, ledger_before = world(admin), consortium.ledger_state()

    # Org2's certificate presented under Org1MSP: the ledger's MSP check refuses it before any contract runs
    org2_identity, org2_signer = consortium.identity("Org2MSP", "trainer0")
    claims_org1 = consortium.connect(Identity("Org1MSP", org2_identity.cert_pem), org2_signer)
    codes, message = consortium.REFUSED_CREATOR
    for act in (lambda: claims_org1.register("trainer", dataset_size=100, schema_hash=SCHEMA), claims_org1.whoami):
        with pytest.raises(EndorseError, match=message) as info:
            act()
        assert info.value.code in codes

    # A certificate of Org1's CA with the victim's name but another key: the contract keys by certificate
    twin = certified_by(consortium, "Org1MSP", "trainer0@org1.example.com", tmp_path / "twin")
    with pytest.raises(PermissionDenied, match="does not match the one it registered with"):
        twin.register("trainer", dataset_size=100, schema_hash=SCHEMA)
    assert world(admin) == before and consortium.ledger_state() == ledger_before

    # Org2's CA certifying Org1's name makes an Org2 participant, never Org1's
    impostor = certified_by(consortium, "Org2MSP", "trainer0@org1.example.com", tmp_path / "impostor")
    assert impostor.register("auditor", dataset_size=0, schema_hash=SCHEMA).id == "Org2MSP:trainer0@org1.example.com"
    with pytest.raises(PermissionDenied, match="not a consortium admin"):
        impostor.suspend(victim, "taking over")
    assert admin.participant(victim) == record


def test_suspend_and_reinstate_by_admin(consortium, admin):
    consortium.client("Org1MSP", "trainer0").register("trainer", dataset_size=100, schema_hash=SCHEMA)
    pid = participant_id("Org1MSP", "trainer0")
    suspended = admin.suspend(pid, "audit pending")
    assert suspended.status == "suspended" and "audit pending" in suspended.status_reason
    with pytest.raises(FailedPrecondition, match="already suspended"):
        admin.suspend(pid, "again")
    reinstated = admin.reinstate(pid, "audit passed")
    assert reinstated.status == "active"
    assert [h["value"]["status"] for h in admin.history("participant", pid)] == ["active", "suspended", "active"]


def test_suspend_by_non_admin_or_without_reason_changes_nothing(consortium, admin):
    trainer = consortium.client("Org1MSP", "trainer0")
    trainer.register("trainer", dataset_size=100, schema_hash=SCHEMA)
    pid = participant_id("Org1MSP", "trainer0")
    before = world(admin)
    with pytest.raises(PermissionDenied):
        trainer.suspend(pid, "I don't like myself")
    with pytest.raises(InvalidArgument, match="reason is required"):
        admin.suspend(pid, "   ")
    with pytest.raises(EndorseError, match="does not exist"):
        admin.suspend("Org1MSP:nobody@org1.example.com", "unknown")
    assert world(admin) == before

"""InitConsortium / ProposeRules / GetRules: versioned, every change approved by a quorum and on the ledger."""

from __future__ import annotations

import pytest

from fedledger.chaincode.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied
from fedledger.sdk.errors import EndorseError

from ..support import world


def test_init_creates_version_one_with_caller_as_admin(consortium):
    rules = consortium.admin().init_consortium({"member_msps": ["Org2MSP"], "reward_per_round": 500})
    assert rules.version == 1
    assert rules.admin_msps == ["Org1MSP"]
    assert rules.member_msps == ["Org1MSP", "Org2MSP"]
    assert rules.reward_per_round == 500
    assert rules.created_by == "Org1MSP:Admin@org1.example.com"


def test_queries_before_init_say_what_to_do(consortium):
    with pytest.raises(FailedPrecondition, match="InitConsortium"):
        consortium.admin().rules()


def test_init_twice_is_refused(consortium):
    admin = consortium.admin()
    admin.init_consortium()
    before = world(admin)
    with pytest.raises(AlreadyExists, match="already initialised"):
        admin.init_consortium({"reward_per_round": 1})
    assert world(admin) == before


def test_init_by_a_client_identity_is_refused(consortium):
    user = consortium.client("Org1MSP", "trainer0")
    with pytest.raises(PermissionDenied, match="not an admin"):
        user.init_consortium()
    with pytest.raises(FailedPrecondition):
        user.rules()


def test_a_rules_change_applies_once_a_quorum_of_organisations_approves(consortium):
    admin = consortium.admin()
    admin.init_consortium({"member_msps": ["Org2MSP"]})
    proposal = admin.propose_rules({"epsilon_total": 20.0, "dispute_quorum": 2})
    assert (proposal.status, proposal.approvals) == ("open", ["Org1MSP"])  # one of the two organisations
    assert admin.rules().version == 1  # one organisation alone changes nothing
    with pytest.raises(AlreadyExists, match="Org1MSP already approved"):
        admin.approve(proposal.id)
    applied = consortium.admin("Org2MSP").approve(proposal.id)
    assert (applied.status, applied.approvals) == ("applied", ["Org1MSP", "Org2MSP"])
    updated = admin.rules()
    assert (updated.version, updated.epsilon_total, updated.dispute_quorum) == (2, 20.0, 2)
    assert admin.proposal(proposal.id) == applied
    assert admin.rules(version=1).epsilon_total == 50.0
    assert admin.rules().version == 2
    history = admin.history("rules")
    assert [entry["value"]["version"] for entry in history] == [1, 2]
    assert all(entry["tx_id"] for entry in history)


def test_rules_change_by_non_admin_changes_nothing(consortium):
    admin = consortium.admin()
    admin.init_consortium({"member_msps": ["Org2MSP"]})
    before, ledger = world(admin), consortium.ledger_state()
    org2_admin = consortium.admin("Org2MSP")  # an admin, but of an organisation that is not a rules admin
    trainer = consortium.client("Org1MSP", "trainer0")
    for caller, message in ((org2_admin, "not an admin organisation"), (trainer, "not the admin of a member")):
        with pytest.raises(PermissionDenied, match=message):
            caller.propose_rules({"reward_per_round": 1})
    assert world(admin) == before and consortium.ledger_state() == ledger


def test_a_stale_rules_proposal_cannot_apply(consortium):
    """Two proposals against version 1: once one applies, the other would silently undo it; it is refused."""
    admin, org2 = consortium.admin(), consortium.admin("Org2MSP")
    admin.init_consortium({"member_msps": ["Org2MSP"]})
    first = admin.propose_rules({"reward_per_round": 10})
    second = admin.propose_rules({"reward_per_round": 20, "epsilon_total": 40.0})
    org2.approve(first.id)
    before, ledger = world(admin), consortium.ledger_state()
    with pytest.raises(FailedPrecondition, match="rules changed .* propose the change again"):
        org2.approve(second.id)
    assert world(admin) == before and consortium.ledger_state() == ledger
    assert admin.rules().reward_per_round == 10


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"no_such_rule": 1}, "unknown rule"),
        ({"epsilon_total": -1}, "must be >= 0"),
        ({"min_participants_per_round": 1.5}, "must be an integer"),
        ({"reward_per_round": "many"}, "must be a number"),
        ({"epsilon_per_round": 60.0}, "cannot exceed epsilon_total"),
        ({"detector_contamination": 0.9}, "detector_contamination"),
        ({"member_msps": "Org2MSP"}, "list of MSP IDs"),
        ({"trust_suspend_below": 2}, "must be <= 1"),
        ({"dispute_quorum": True}, "must be a number"),
        ({"max_text_bytes": 8}, "max_text_bytes must be >= 16"),
        ({"max_text_bytes": 10**7}, "max_text_bytes must be <= 1000000"),
        ({"detector_max_similarity": 1.5}, "detector_max_similarity must be <= 1"),
        ({"detector_max_norm_ratio": 0.5}, "detector_max_norm_ratio must be >= 1"),
        ({"weight_samples_bound": 0.5}, "weight_samples_bound must be >= 1"),
        ({"weight_samples_bound": "twice"}, "weight_samples_bound must be a number"),
        ({"weight_norm_clip": 1}, "weight_norm_clip must be true or false"),
        ({"weight_direction": "yes"}, "weight_direction must be true or false"),
        ({"weight_diversity": None}, "weight_diversity must be true or false"),
    ],
)
def test_invalid_rules_are_refused_and_change_nothing(consortium, patch, message):
    admin = consortium.admin()
    admin.init_consortium()
    before = world(admin)
    with pytest.raises(InvalidArgument, match=message):
        admin.propose_rules(patch)
    assert world(admin) == before


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"epsilon_total": NaN}'])
def test_malformed_rules_json_is_refused(consortium, text):
    admin = consortium.admin()
    with pytest.raises(InvalidArgument, match="rules must be"):
        admin.contract.submit_transaction("InitConsortium", text)
    with pytest.raises(FailedPrecondition):
        admin.rules()


def test_wrong_argument_count_and_unknown_transaction(consortium):
    admin = consortium.admin()
    with pytest.raises(InvalidArgument, match="takes rules_json"):
        admin.contract.submit_transaction("ProposeRules")
    with pytest.raises(EndorseError, match="does not exist"):
        admin.contract.submit_transaction("MintTokens", "1000")

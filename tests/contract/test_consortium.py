"""InitConsortium / UpdateRules / GetRules: admin only, versioned, every change on the ledger."""

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


def test_update_rules_makes_a_new_version_and_keeps_history(consortium):
    admin = consortium.admin()
    admin.init_consortium()
    updated = admin.update_rules({"epsilon_total": 20.0, "dispute_quorum": 2})
    assert (updated.version, updated.epsilon_total, updated.dispute_quorum) == (2, 20.0, 2)
    assert admin.rules(version=1).epsilon_total == 50.0
    assert admin.rules().version == 2
    history = admin.history("rules")
    assert [entry["value"]["version"] for entry in history] == [1, 2]
    assert all(entry["tx_id"] for entry in history)


def test_rules_change_by_non_admin_changes_nothing(consortium):
    admin = consortium.admin()
    admin.init_consortium({"member_msps": ["Org2MSP"]})
    before = world(admin)
    org2_admin = consortium.admin("Org2MSP")  # an admin, but of an organisation that is not a rules admin
    trainer = consortium.client("Org1MSP", "trainer0")
    for caller in (org2_admin, trainer):
        with pytest.raises(PermissionDenied, match="not a consortium admin"):
            caller.update_rules({"reward_per_round": 1})
    assert world(admin) == before


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
    ],
)
def test_invalid_rules_are_refused_and_change_nothing(consortium, patch, message):
    admin = consortium.admin()
    admin.init_consortium()
    before = world(admin)
    with pytest.raises(InvalidArgument, match=message):
        admin.update_rules(patch)
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
        admin.contract.submit_transaction("UpdateRules")
    with pytest.raises(EndorseError, match="does not exist"):
        admin.contract.submit_transaction("MintTokens", "1000")

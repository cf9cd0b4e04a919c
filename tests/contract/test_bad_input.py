"""Malformed arguments get the contract's typed errors on both ledgers and change nothing: bytes that are not
UTF-8, JSON nested beyond any use, and free text over the rules' size limit."""

from __future__ import annotations

import pytest

from fedledger.chaincode.errors import InvalidArgument

from ..support import ready_round, world


def test_an_argument_that_is_not_utf8_is_refused(consortium):
    aggregator, (trainer, _), _genesis = ready_round(consortium, trainers=2)
    before = world(aggregator)
    with pytest.raises(InvalidArgument, match="argument 1 is not UTF-8"):
        trainer.contract.submit("AbandonRound", arguments=[b"\xff\xfe1", "why"])
    with pytest.raises(InvalidArgument, match="argument 2 is not UTF-8"):
        aggregator.contract.submit("AbandonRound", arguments=["1", b"caf\xe9"])
    assert world(aggregator) == before


def test_deeply_nested_json_is_refused(consortium):
    admin = consortium.admin()
    admin.init_consortium({"member_msps": ["Org1MSP", "Org2MSP"]})
    before = world(admin)
    with pytest.raises(InvalidArgument, match="nested too deeply"):
        admin.contract.submit("ProposeRules", arguments=["[" * 100_000 + "]" * 100_000])
    with pytest.raises(InvalidArgument, match="at most"):
        admin.contract.submit("ProposeRules", arguments=['{"x": "' + "a" * (1 << 20) + '"}'])
    assert world(admin) == before


def test_free_text_over_the_rules_limit_is_refused(consortium):
    aggregator, _trainers, _genesis = ready_round(consortium, trainers=2, rules={"max_text_bytes": 64})
    admin = consortium.admin()
    before = world(aggregator)
    with pytest.raises(InvalidArgument, match="65 bytes; the consortium rules allow at most 64"):
        aggregator.abandon_round(1, "x" * 65)
    with pytest.raises(InvalidArgument, match="at most 64"):
        admin.suspend(aggregator.whoami()["id"], "é" * 40)  # 80 bytes of UTF-8 in 40 characters
    assert world(aggregator) == before
    assert aggregator.abandon_round(1, "x" * 64).status == "abandoned"

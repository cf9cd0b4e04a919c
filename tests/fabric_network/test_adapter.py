"""FabricLedgerContext against the real peer: every LedgerContext call, with Fabric's semantics."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from .fabric_cli import FabricCli

pytestmark = pytest.mark.fabric


def test_partial_composite_key_range_uses_fabric_keys_in_key_order(fabric_network: FabricCli, compat_cc: str) -> None:
    tag = f"t{time.time_ns()}"
    for participant, value in (("bob", "2"), ("alice", "1"), ("carol", "3")):
        assert fabric_network.invoke(compat_cc, ["PutComposite", tag, "r1", participant, value]).status == "VALID"
    assert fabric_network.invoke(compat_cc, ["PutComposite", tag, "r2", "alice", "other round"]).status == "VALID"
    rows = json.loads(fabric_network.query(compat_cc, ["Range", tag, "r1"]))
    assert rows == [
        [f"\x00{tag}\x00r1\x00alice\x00", "1"],
        [f"\x00{tag}\x00r1\x00bob\x00", "2"],
        [f"\x00{tag}\x00r1\x00carol\x00", "3"],
    ]
    assert len(json.loads(fabric_network.query(compat_cc, ["Range", tag]))) == 4


def test_history_is_oldest_first_with_tx_ids_and_deletes(fabric_network: FabricCli, compat_cc: str) -> None:
    key = f"hist-{time.time_ns()}"
    txs = [
        fabric_network.invoke(compat_cc, ["Put", key, "v1"]).tx_id,
        fabric_network.invoke(compat_cc, ["Put", key, "v2"]).tx_id,
        fabric_network.invoke(compat_cc, ["Delete", key]).tx_id,
    ]
    history = json.loads(fabric_network.query(compat_cc, ["History", key]))
    assert [h["tx_id"] for h in history] == txs
    assert [(h["value"], h["delete"]) for h in history] == [("v1", False), ("v2", False), ("", True)]
    stamps = [h["timestamp"] for h in history]
    assert stamps == sorted(stamps) and abs(stamps[-1] - time.time()) < 120


def test_reads_do_not_see_the_transactions_own_writes(fabric_network: FabricCli, compat_cc: str) -> None:
    key = f"own-{time.time_ns()}"
    assert json.loads(fabric_network.query(compat_cc, ["ReadOwnWrite", key])) == {"read": None}


def test_get_and_delete_state(fabric_network: FabricCli, compat_cc: str) -> None:
    key = f"kv-{time.time_ns()}"
    fabric_network.invoke(compat_cc, ["Put", key, "value \u00e9"])
    assert fabric_network.query(compat_cc, ["Get", key], org=2) == "value \u00e9".encode()
    fabric_network.invoke(compat_cc, ["Delete", key])
    with pytest.raises(Exception, match="NOT_FOUND"):
        fabric_network.query(compat_cc, ["Get", key])


@pytest.mark.parametrize("org", [1, 2])
def test_creator_tx_id_and_timestamp_come_from_the_signed_proposal(
    fabric_network: FabricCli, compat_cc: str, org: int
) -> None:
    before = time.time()
    meta = json.loads(fabric_network.query(compat_cc, ["Meta"], org=org))
    user = fabric_network.org(org)["users"]["User1"]
    assert meta["mspid"] == f"Org{org}MSP"
    assert meta["cert"].encode() == next((Path(user["msp_dir"]) / "signcerts").iterdir()).read_bytes()
    assert re.fullmatch(r"[0-9a-f]{64}", meta["tx_id"])
    assert before - 5 < meta["timestamp"] < time.time() + 5

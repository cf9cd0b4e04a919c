"""Separate processes, as in a real deployment: two `fedledger client` members and a `fedledger aggregator`
that is killed mid-round and restarted; they coordinate only through the ledger and the store."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from fedledger.chaincode.embedded.bootstrap import create_consortium
from fedledger.sdk.client import FedLedgerClient, grant_role
from fedledger.sdk.connection import LedgerLocation
from fedledger.sdk.store import create_key

pytest.importorskip("torch")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedledger.cli.main", *args]


@pytest.mark.parametrize("mode", ["shared", "plaintext"])
def test_members_and_a_restarted_aggregator_finish_a_round(tmp_path, mode):
    """``shared``: each organisation's admin runs `fedledger holder`, the store has no key and no update enters
    it; ``plaintext``: no organisation holds a share key, the store seals the updates under the consortium key."""
    consortium = create_consortium(tmp_path / "consortium")
    if mode == "plaintext":
        create_key(tmp_path / "store.key")
    observer = LedgerLocation("embedded", consortium.base).client("Org1MSP", "Admin", admin=True)
    observer.init_consortium({"member_msps": ["Org1MSP", "Org2MSP"]})
    # what each organisation's admin does before the processes start: enrol its members, grant the aggregator
    admins = {
        m: LedgerLocation("embedded", consortium.base).client(m, "Admin", admin=True) for m in ("Org1MSP", "Org2MSP")
    }
    admins["Org1MSP"].enrol_trainer("hospital-a@org1.example.com", dataset_size=1000, schema_hash="0" * 64)
    admins["Org2MSP"].enrol_trainer("hospital-b@org2.example.com", dataset_size=1000, schema_hash="0" * 64)
    grant_role(list(admins.values()), "Org1MSP:aggregator@org1.example.com", "aggregator")

    def common(mspid: str, user: str) -> list[str]:
        consortium.user(mspid, user)  # issues the identity on first use
        msp = consortium.organizations[mspid].user_msp(user)
        return [
            "--ledger-dir", str(consortium.base), "--msp-dir", str(msp), "--mspid", mspid,
            "--store", str(tmp_path / "store"),
            *(["--store-key", str(tmp_path / "store.key")] if mode == "plaintext" else []),
        ]  # fmt: skip

    def model() -> list[str]:
        return ["--model", "tiny-bert", "--max-length", "48"]

    holders = []
    if mode == "shared":
        for mspid in ("Org1MSP", "Org2MSP"):
            consortium.admin(mspid)  # issues the admin identity on first use
            admin_msp = consortium.organizations[mspid].user_msp("Admin")
            key = tmp_path / "keys" / f"{mspid}.pem"
            connection = [
                "--ledger-dir", str(consortium.base), "--msp-dir", str(admin_msp), "--mspid", mspid,
                "--store", str(tmp_path / "store"), "--key", str(key), "--wait", "200",
            ]  # fmt: skip
            holders.append(
                subprocess.Popen(_cli("holder", *connection), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            )
        deadline = time.time() + 60
        while time.time() < deadline and len(observer.share_keys()) < 2:
            time.sleep(0.5)
        assert len(observer.share_keys()) == 2, "the holders did not register their share keys"

    card = tmp_path / "card"
    aggregator_args = _cli(
        "aggregator",
        *common("Org1MSP", "aggregator"),
        *model(),
        "--expect",
        "2",
        "--round-seconds",
        "300",
        "--card",
        str(card),
    )
    first = subprocess.Popen(aggregator_args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not _round_open(observer):
        time.sleep(0.5)
    first.kill()  # crash while the round is collecting updates
    first.wait()
    assert _round_open(observer), "the aggregator never opened round 1"

    members = [
        subprocess.Popen(
            _cli(
                "client",
                *common(mspid, name),
                *model(),
                "--data",
                f"breast-cancer:{i + 1}/2",
                "--epsilon",
                "0",
                "--epochs",
                "1",
                "--wait",
                "120",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, (mspid, name) in enumerate([("Org1MSP", "hospital-a"), ("Org2MSP", "hospital-b")])
    ]
    second = subprocess.run(aggregator_args, capture_output=True, text=True, timeout=400)
    outputs = [m.communicate(timeout=300) for m in members]
    assert second.returncode == 0, second.stderr[-2000:]
    assert all(m.returncode == 0 for m in members), [o[1][-1000:] for o in outputs]
    assert "round 1: model v1" in second.stdout
    assert "round 1: resumed at step 'collect'" in second.stdout  # resumed the ledger's round, opened none

    record = observer.round(1)
    assert record.status == "aggregated"
    assert bool(record.share_holders) == (mode == "shared")
    if mode == "shared":
        held = [h.communicate(timeout=120) for h in holders]
        assert all(h.returncode == 0 for h in holders), [o[1][-1000:] for o in held]
        assert all("share sum" in o[0] for o in held)
        assert not list((tmp_path / "store").glob("*/*.sealed")) and not (tmp_path / "store.key").exists()
    assert record.aggregate is not None
    assert sorted(observer.model(record.aggregate).updates[i]["participant"] for i in range(2)) == [
        "Org1MSP:hospital-a@org1.example.com",
        "Org2MSP:hospital-b@org2.example.com",
    ]
    metrics = observer.latest_model().metrics
    assert set(metrics) >= {"accuracy", "precision", "recall", "f1"}
    json.dumps(metrics)
    # the restarted aggregator wrote the model card, and the audit re-derives it from the ledger and the store
    assert json.loads((card / "provenance.json").read_text())["final_adapter"]["hash"] == record.aggregate
    audit = subprocess.run(_cli("audit", str(card)), capture_output=True, text=True, timeout=300)
    assert audit.returncode == 0 and audit.stdout.startswith("OK"), audit.stdout + audit.stderr[-2000:]


def _round_open(client: FedLedgerClient) -> bool:
    return any(r.number == 1 for r in client.rounds())


def test_a_client_with_no_open_round_says_it_waits_and_why_it_stops(tmp_path):
    consortium = create_consortium(tmp_path / "consortium")
    create_key(tmp_path / "store.key")
    admin = LedgerLocation("embedded", consortium.base).client("Org1MSP", "Admin", admin=True)
    admin.init_consortium({"member_msps": ["Org1MSP"]})
    admin.enrol_trainer("hospital-a@org1.example.com", dataset_size=1000, schema_hash="0" * 64)
    consortium.user("Org1MSP", "hospital-a")
    msp = consortium.organizations["Org1MSP"].user_msp("hospital-a")
    result = subprocess.run(
        _cli(
            "client",
            *("--ledger-dir", str(consortium.base), "--msp-dir", str(msp), "--mspid", "Org1MSP"),
            *("--store", str(tmp_path / "store"), "--store-key", str(tmp_path / "store.key")),
            *("--model", "tiny-bert", "--data", "breast-cancer:1/2", "--epsilon", "0", "--wait", "3"),
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "waiting up to 3 s for a round to open (0 of 1 done)" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        "fedledger client: no round opened within 3 s (0 of 1 done); "
        "ask the aggregator to open one, or give --wait more seconds"
    )
    assert admin.rounds() == []

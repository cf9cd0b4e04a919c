"""The fedledger command: help, exit codes, ledger init/verify, generic transactions, the demo."""

from __future__ import annotations

import json
import shlex
import sqlite3

import pytest

from fedledger.chaincode.embedded.bootstrap import open_consortium
from fedledger.cli.main import main
from fedledger.experiments.run_folder import MARKER

from .commands import fedledger_cli as fedledger
from .commands import tree


def test_help_explains_the_commands():
    result = fedledger("--help")
    assert result.returncode == 0
    for command in ("demo", "ledger", "evaluate", "submit"):
        assert command in result.stdout


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["ledger", "frobnicate"])
    assert info.value.code == 2
    assert main(["ledger", "verify", str(tmp_path / "missing")]) == 2
    assert "fedledger ledger init" in capsys.readouterr().err


def test_init_then_verify_then_tamper(tmp_path, capsys):
    base = tmp_path / "net"
    assert main(["ledger", "init", str(base), "--orgs", "Org1MSP=org1.example.com,Org2MSP=org2.example.com"]) == 0
    msp = base / "organizations/peerOrganizations/org1.example.com/users/Admin@org1.example.com/msp"
    common = ["--ledger-dir", str(base), "--msp-dir", str(msp), "--mspid", "Org1MSP"]
    assert "created ledger" in capsys.readouterr().out
    assert main(["submit", "InitConsortium", '{"reward_per_round": 7}', *common]) == 0
    assert json.loads(capsys.readouterr().out)["reward_per_round"] == 7
    assert main(["evaluate", "GetRules", *common]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1
    assert main(["submit", "InitConsortium", "{}", *common]) == 1
    assert "already initialised" in capsys.readouterr().err

    assert main(["ledger", "verify", str(base)]) == 0
    assert "OK: 2 blocks" in capsys.readouterr().out
    with sqlite3.connect(base / "ledger" / "ledger.sqlite") as db:
        db.execute("UPDATE blocks SET data = CAST(REPLACE(CAST(data AS TEXT), '7', '8') AS BLOB) WHERE number = 1")
    assert main(["ledger", "verify", str(base)]) == 1
    assert "TAMPERED at block 1" in capsys.readouterr().out


def test_the_admins_governance_flow_works_as_the_readme_shows(tmp_path, capsys):
    """EnrolTrainer by the member's admin, ProposeRole + ApproveProposal by a quorum, then the member and the
    aggregator register: the commands README.md and the members' error hints name."""
    base = tmp_path / "net"
    assert main(["ledger", "init", str(base), "--orgs", "Org1MSP=org1.example.com,Org2MSP=org2.example.com"]) == 0
    users = base / "organizations/peerOrganizations"

    def as_(mspid: str, user: str) -> list[str]:
        domain = "org1.example.com" if mspid == "Org1MSP" else "org2.example.com"
        msp = users / domain / "users" / f"{user}@{domain}" / "msp"
        return ["--ledger-dir", str(base), "--msp-dir", str(msp), "--mspid", mspid]

    consortium = open_consortium(base)
    for mspid in ("Org1MSP", "Org2MSP"):  # the organisations' CAs issue their members' identities
        consortium.user(mspid, "User1")
    org1, org2 = as_("Org1MSP", "Admin"), as_("Org2MSP", "Admin")
    assert main(["submit", "InitConsortium", '{"member_msps": ["Org2MSP"]}', *org1]) == 0
    assert main(["submit", "EnrolTrainer", "User1@org2.example.com", "1200", "ab" * 32, *org2]) == 0
    capsys.readouterr()
    assert main(["submit", "ProposeRole", "Org1MSP:User1@org1.example.com", "aggregator", *org1]) == 0
    proposal = json.loads(capsys.readouterr().out)
    assert proposal["status"] == "open"
    assert main(["submit", "ApproveProposal", proposal["id"], *org2]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "applied"
    assert main(["submit", "RegisterParticipant", "aggregator", *as_("Org1MSP", "User1")]) == 0
    capsys.readouterr()
    assert main(["submit", "RegisterParticipant", "trainer", *as_("Org2MSP", "User1")]) == 0
    assert json.loads(capsys.readouterr().out)["dataset_size"] == 1200
    assert main(["submit", "RegisterParticipant", "auditor", *as_("Org1MSP", "Admin")]) == 1
    assert "holds no auditor grant" in capsys.readouterr().err


def test_synthetic_demo_runs_the_whole_flow_without_training(tmp_path):
    result = fedledger("demo", "--synthetic", "--out", str(tmp_path / "run"), "--rounds", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "SYNTHETIC" in out
    assert out.count("REJECTED") == 2 and "mallory" in out
    assert "ledger verify: OK" in out
    assert "lineage: v2(" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--rounds", "-2", "--synthetic"], "--rounds must be at least 1"),
        (["--members", "1"], "--members must be at least 2"),
        (["--epsilon", "-1"], "--epsilon must be 0 (no DP) or a positive"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--learning-rate", "0"], "--learning-rate must be positive"),
        (["--model", "/typo/model"], "--model /typo/model: not minilm or tiny-bert and no such folder"),
        (["--ledger", "fabric", "--synthetic"], "--synthetic runs on the embedded ledger only"),
    ],
)
def test_bad_demo_arguments_are_refused_before_a_previous_run_is_touched(tmp_path, argv, message):
    out = tmp_path / "run"
    assert main(["demo", "--synthetic", "--out", str(out), "--rounds", "1"]) == 0
    before = tree(out)
    result = fedledger("demo", "--out", str(out), *argv)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"fedledger: error: {result.stderr.split('error: ', 1)[1].strip()}"]
    assert message in result.stderr
    assert tree(out) == before


@pytest.mark.parametrize("kind", ["file", "folder", "symlink"])
def test_demo_never_deletes_what_it_did_not_make(tmp_path, kind):
    mine = tmp_path / "mydocs"
    if kind == "file":
        mine.write_text("thesis draft")
    else:
        target = tmp_path / "real" if kind == "symlink" else mine
        target.mkdir()
        (target / "notes.txt").write_text("keep me")
        if kind == "symlink":
            mine.symlink_to(target, target_is_directory=True)
    before = tree(tmp_path)
    result = fedledger("demo", "--synthetic", "--out", str(mine), "--rounds", "1")
    assert result.returncode == 2
    assert "choose another --out" in result.stderr and "Traceback" not in result.stderr
    assert tree(tmp_path) == before


def test_a_previous_run_or_an_empty_folder_is_replaced(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    assert fedledger("demo", "--synthetic", "--out", str(out), "--rounds", "1").returncode == 0
    assert (out / MARKER).is_file()
    (out / "consortium" / "left-over").write_text("from the first run")
    assert fedledger("demo", "--synthetic", "--out", str(out), "--rounds", "1").returncode == 0
    assert not (out / "consortium" / "left-over").exists() and (out / MARKER).is_file()


def test_ledger_verify_finds_the_ledger_of_a_run_and_its_hint_for_a_missing_one_works(tmp_path):
    run = tmp_path / "run"
    assert fedledger("demo", "--synthetic", "--out", str(run), "--rounds", "1").returncode == 0
    for name in (run, run / "consortium", run / "consortium" / "ledger"):
        verified = fedledger("ledger", "verify", str(name))
        assert verified.returncode == 0 and "OK" in verified.stdout, verified.stderr
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    missing = fedledger("ledger", "verify", str(empty))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    hint = missing.stderr.split("`")[1]
    assert hint == f"fedledger ledger init {empty}"
    assert fedledger(*hint.split()[1:]).returncode == 0
    assert fedledger("ledger", "verify", str(empty)).returncode == 0


def test_an_unforeseen_error_is_one_line_and_the_traceback_command_it_gives_works(tmp_path):
    broken = tmp_path / "broken ledger"
    broken.mkdir()
    (broken / "ledger.sqlite").write_text("not a database")
    result = fedledger("ledger", "verify", str(broken))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("fedledger: error: DatabaseError: file is not a database; for the traceback: ")
    command = shlex.split(lines[0].split("for the traceback: ", 1)[1])
    assert command == ["fedledger", "--debug", "ledger", "verify", str(broken)]
    debug = fedledger(*command[1:])
    assert debug.returncode != 0 and "Traceback (most recent call last)" in debug.stderr
    assert "sqlite3.DatabaseError: file is not a database" in debug.stderr


def test_training_demo_then_audit(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    result = fedledger("demo", "--out", str(out), "--model", "tiny-bert", "--rounds", "2", "--epochs", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    # the attacker is rejected in every round (honest false positives are the detector study's business)
    assert sum(1 for line in result.stdout.splitlines() if line.startswith("mallory") and "REJECTED" in line) == 2
    # and says why: the rule that fired and its evidence, under each round's table
    why = [line for line in result.stdout.splitlines() if line.startswith("  mallory: rejected by rule ")]
    assert len(why) == 2 and all("times the round's median norm" in line or "robust deviations" in line for line in why)
    assert "Round 2: model v2" in result.stdout and "accuracy" in result.stdout
    audit = fedledger("audit", str(out))
    assert audit.returncode == 0, audit.stdout + audit.stderr[-2000:]
    assert audit.stdout.startswith("OK: ") and "20 sealed shares, 10 updates" in audit.stdout
    assert "4 organisation sums verified, 2 models recomputed" in audit.stdout  # secret-shared by default
    (out / "model" / "global_adapter.safetensors").write_bytes(b"tampered")
    tampered = fedledger("audit", str(out))
    assert tampered.returncode == 1 and "MISMATCH" in tampered.stdout


@pytest.mark.parametrize("adapter", ["all", "pooler"])
def test_client_and_aggregator_build_the_adapter_layout_they_are_given(adapter):
    pytest.importorskip("torch")
    import argparse

    from fedledger.cli.federate import _model, add_parsers
    from fedledger.trainer.models import get_adapter_state

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers())
    common = ["--ledger-dir", "x", "--msp-dir", "m", "--mspid", "Org1MSP", "--store", "s", "--store-key", "k"]
    args = parser.parse_args(["client", *common, "--data", "d.csv", "--model", "tiny-bert", "--adapter", adapter])
    lora = [n for n in get_adapter_state(_model(args)[0]) if "lora_" in n]
    assert lora
    assert all("pooler" in n for n in lora) == (adapter == "pooler")

"""--json on demo, audit, score, ledger verify and report: one JSON object on stdout, for success and for errors."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys

import pytest

from fedledger.report.rundir import connect_ledger, locate


def fedledger_json(*args: str) -> tuple[int, dict, str]:
    """Runs the command; stdout must be exactly one JSON object (human output may go to stderr only)."""
    result = subprocess.run(
        [sys.executable, "-m", "fedledger.cli.main", *args, "--json"], capture_output=True, text=True, timeout=300
    )
    summary = json.loads(result.stdout)
    assert isinstance(summary, dict) and result.stdout.count("\n") == 1, result.stdout
    assert summary["ok"] == (result.returncode == 0)
    return result.returncode, summary, result.stderr


def assert_error(code: int, summary: dict, command: str) -> None:
    assert code != 0 and summary["exit_code"] == code and summary["command"] == command
    assert summary["error"] and "Traceback" not in summary["error"] and summary["hint"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("json") / "run"
    code, summary, stderr = fedledger_json("demo", "--synthetic", "--out", str(out), "--rounds", "2")
    assert code == 0, stderr
    return out, summary, stderr


def test_demo_json_is_the_ledger_summary_and_progress_goes_to_stderr(synthetic):
    out, summary, stderr = synthetic
    assert "SYNTHETIC" in stderr and "Round 2" in stderr  # the human tables, off stdout
    assert summary["command"] == "demo" and summary["run_dir"] == str(out)
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    client = connect_ledger(locate(out))
    for entry in summary["rounds"]:
        verdicts = {u["participant"]: u["verdict"] for u in entry["updates"]}
        assert verdicts == {u.participant: u.status for u in client.updates(entry["round"])}
        assert entry["model"]["hash"] == client.round(entry["round"]).aggregate
    rejected = [u for r in summary["rounds"] for u in r["updates"] if u["verdict"] == "rejected"]
    assert len(rejected) == 2 and all("mallory" in u["participant"] and u["rule"] for u in rejected)
    spent = {m["participant"]: m["epsilon_spent"] for m in summary["members"]}
    assert spent == {pid: client.balance(pid).epsilon_spent for pid in spent}
    assert summary["privacy"] == {"epsilon_budget": client.rules().epsilon_total, "delta": client.rules().dp_delta}
    for command in summary["checks"].values():  # the follow-ups it names work
        assert subprocess.run([sys.executable, "-m", "fedledger.cli.main", *shlex.split(command)[1:]]).returncode == 0


def test_ledger_verify_and_report_json(synthetic, tmp_path):
    out, _, _ = synthetic
    code, summary, _ = fedledger_json("ledger", "verify", str(out))
    assert code == 0 and summary["command"] == "ledger verify" and summary["result"].startswith("OK: ")
    code, summary, _ = fedledger_json("report", str(out), "-o", str(tmp_path / "r.html"))
    assert code == 0 and summary["report"] == str(tmp_path / "r.html") and (tmp_path / "r.html").is_file()


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["demo", "--synthetic", "--rounds", "0"], "demo"),
        (["ledger", "verify"], "ledger verify"),  # argparse's own error: no folder given
        (["audit", "{missing}"], "audit"),
        (["report", "{missing}"], "report"),
        (["score", "{missing}"], "score"),
    ],
)
def test_errors_under_json_are_a_json_object_with_the_error_and_a_working_hint(tmp_path, argv, command):
    argv = [a.replace("{missing}", str(tmp_path / "missing")) for a in argv]
    code, summary, _ = fedledger_json(*argv)
    assert_error(code, summary, command)
    if summary["hint"].startswith("fedledger "):  # a command: it must work
        hint = shlex.split(summary["hint"])[1:]
        assert subprocess.run([sys.executable, "-m", "fedledger.cli.main", *hint], capture_output=True).returncode == 0


def test_ledger_verify_json_of_a_tampered_ledger_fails(synthetic, tmp_path):
    import sqlite3

    copy = tmp_path / "copy"
    shutil.copytree(synthetic[0], copy)
    with sqlite3.connect(copy / "consortium" / "ledger" / "ledger.sqlite") as db:
        db.execute("UPDATE blocks SET data = CAST(REPLACE(CAST(data AS TEXT), 'a', 'b') AS BLOB) WHERE number = 3")
    code, summary, _ = fedledger_json("ledger", "verify", str(copy))
    assert code == 1 and summary["ok"] is False and summary["result"].startswith("TAMPERED at block")


def test_audit_json_of_a_training_run_and_of_a_tampered_one(trained, tmp_path):
    out, _ = trained
    code, summary, _ = fedledger_json("audit", str(out))
    assert code == 0 and summary["command"] == "audit" and summary["result"].startswith("OK: ")
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "model" / "global_adapter.safetensors").write_bytes(b"tampered")
    code, summary, _ = fedledger_json("audit", str(copy))
    assert code == 1 and summary["result"].startswith("MISMATCH")

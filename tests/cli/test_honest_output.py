"""Issue 12, honest output: one ε, the ledger's, in the demo's tables, the report and the ledger itself."""

from __future__ import annotations

import pytest

from fedledger.chaincode.privacy_budget import SPENT_HEADING, spent_of_budget
from fedledger.cli.main import main
from fedledger.report.rundir import connect_ledger, locate
from tests.cli.conftest import EPSILON, ROUNDS
from tests.cli.html_page import facts_table, read_page, table_with

torch = pytest.importorskip("torch")


def _last_round_table(stdout: str) -> dict[str, list[str]]:
    """The demo's last round table as member -> cells (and the header under key "member")."""
    block = stdout.split(f"\nRound {ROUNDS}: ", 1)[1].splitlines()[1:]
    cells = [[c.strip() for c in line.split("|")] for line in block if "|" in line and not line.startswith("-")]
    return {row[0]: row for row in cells}


def test_the_demo_the_report_and_the_ledger_show_one_composed_epsilon(trained, tmp_path):
    out, stdout = trained
    banner = stdout.splitlines()[0]
    assert f"privacy budget ε = {EPSILON:g} per member over all {ROUNDS} rounds at δ = 1e-05" in banner

    client = connect_ledger(locate(out))
    rules = client.rules()
    assert rules.epsilon_total == EPSILON  # the ledger enforces the budget the banner states
    ledger = {p.id: client.balance(p.id).epsilon_spent for p in client.participants() if p.role == "trainer"}
    assert all(0 < e <= EPSILON for e in ledger.values())

    printed = _last_round_table(stdout)
    column = printed["member"].index(SPENT_HEADING)
    assert main(["report", str(out), "-o", str(tmp_path / "report.html")]) == 0  # the shared run stays as made
    tables, _ = read_page((tmp_path / "report.html").read_text())
    rewards = table_with(tables, "rewards", "participant", containing=SPENT_HEADING)
    reported = {row[0].split(" (")[0]: row[rewards.column(SPENT_HEADING)] for row in rewards.rows}
    summary = facts_table(tables, "summary")
    assert len(printed) - 1 == len(reported) == len(ledger) == 5
    for pid, spent in ledger.items():
        name = pid.split(":", 1)[1].split("@", 1)[0]
        expected = spent_of_budget(spent, EPSILON)  # e.g. "2.99 / 3": composed over both rounds, not one round's
        assert printed[name][column] == reported[name] == expected
    assert summary[SPENT_HEADING].startswith(spent_of_budget(max(ledger.values()), EPSILON))
    # every update in the report shows the composed ε through it: the last round's equal the ledger's balance
    updates = table_with(tables, "anomalies", "round", containing=SPENT_HEADING)
    last = [row for row in updates.rows if row[0] == str(ROUNDS)]
    assert sorted(row[updates.column(SPENT_HEADING)] for row in last) == sorted(
        spent_of_budget(e, EPSILON) for e in ledger.values()
    )

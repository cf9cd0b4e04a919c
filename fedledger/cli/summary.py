"""What ``fedledger demo --json`` prints: the run as its ledger records it (documented in README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedledger.sdk.client import FedLedgerClient


def demo_summary(client: FedLedgerClient, out: Path, *, checks: dict[str, str]) -> dict[str, Any]:
    """Rounds with their model and every update's verdict, and each member's trust, balance and ε spent, read
    from the ledger; ``checks`` maps a follow-up check to the command that runs it."""
    rules = client.rules()
    balances = client.balances()
    rounds = []
    for record in client.rounds():
        model = client.model(record.aggregate) if record.aggregate else None
        updates = [
            {
                "participant": u.participant,
                "verdict": u.status,
                "rule": u.rule or None,
                "score": u.score,
                "epsilon_spent": u.epsilon_spent,
                "reason": u.reason,
            }
            for u in sorted(client.updates(record.number), key=lambda u: u.participant)
        ]
        rounds.append(
            {
                "round": record.number,
                "status": record.status,
                "model": None if model is None else {"version": model.version, "hash": model.hash},
                "metrics": {} if model is None else model.metrics,
                "updates": updates,
            }
        )
    members = [
        {
            "participant": p.id,
            "trust": p.trust,
            "status": p.status,
            "balance": balances.get(p.id, 0),
            "epsilon_spent": client.balance(p.id).epsilon_spent or None,
        }
        for p in client.participants()
        if p.role == "trainer"
    ]
    return {
        "run_dir": str(out),
        "privacy": {"epsilon_budget": rules.epsilon_total, "delta": rules.dp_delta},
        "rounds": rounds,
        "members": members,
        "checks": checks,
    }

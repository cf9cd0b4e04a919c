"""A real small training demo run, shared by the tests of its output (ε, --json, the audit, the card)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .commands import fedledger_cli

ROUNDS, EPSILON = 2, 3.0


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Path, str]:
    """Tiny BERT, LoRA + DP-SGD at ε 3 over 2 rounds, 5 members with one attacker, embedded ledger, made once by
    `fedledger demo`: the run folder and what the demo printed. Read-only: a test that alters it works on a
    copy."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("demo") / "run"
    argv = ["--out", str(out), "--model", "tiny-bert", "--rounds", str(ROUNDS), "--epochs", "1"]
    made = fedledger_cli("demo", *argv, "--epsilon", str(EPSILON))
    assert made.returncode == 0, made.stderr[-3000:]
    return out, made.stdout


@pytest.fixture(scope="session")
def demo_run(trained) -> Path:
    return trained[0]

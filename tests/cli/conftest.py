from __future__ import annotations

from pathlib import Path

import pytest

from .commands import fedledger_cli


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A real small training run (tiny BERT, LoRA + DP-SGD, 5 members with one attacker, 2 rounds, embedded
    ledger), made once by `fedledger demo`. Read-only: a test that alters it works on a copy."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("demo") / "run"
    made = fedledger_cli("demo", "--out", str(out), "--model", "tiny-bert", "--rounds", "2", "--epochs", "1")
    assert made.returncode == 0, made.stderr[-3000:]
    return out

"""A real small training demo run, shared by the tests of its output (ε, --json, audit)."""

from __future__ import annotations

import subprocess
import sys

import pytest

ROUNDS, EPSILON = 2, 3.0


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A real small training demo: tiny BERT, LoRA + DP-SGD at ε 3 over 2 rounds, one attacker."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("honest") / "run"
    argv = ["demo", "--out", str(out), "--model", "tiny-bert", "--rounds", str(ROUNDS), "--epochs", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "fedledger.cli.main", *argv, "--epsilon", str(EPSILON)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout

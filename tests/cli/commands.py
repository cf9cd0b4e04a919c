"""Running the ``fedledger`` command as a user does: a separate process, from any working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fedledger

#: The checkout under test: a process started in another working directory must import this fedledger.
CHECKOUT = Path(fedledger.__file__).resolve().parent.parent


def fedledger_cli(*args: str, cwd: Path | str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "fedledger.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: equal trees are byte-identical."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

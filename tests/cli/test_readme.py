"""README.md cannot drift: its SDK snippet runs against a demo run folder, and its first screen names the
command that `make demo` installs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # the snippet imports fedledger as a user's script would; PYTHONPATH makes it this checkout's fedledger
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_readme_sdk_snippet_runs_against_a_demo_run(tmp_path):
    demo = _run(["-m", "fedledger.cli.main", "demo", "--synthetic", "--out", "demo-out", "--rounds", "1"], tmp_path)
    assert demo.returncode == 0, demo.stderr
    section = README.split("## Using the SDK", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "demo-out/" in snippet
    result = _run(["-c", snippet], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^round 1: accepted, [0-9a-f]{12}…, ε spent 0\.\d+$", result.stdout, re.M), result.stdout
    assert re.search(r"^balance \d+ latest model [0-9a-f]{12}$", result.stdout, re.M)
    assert "refused: [FAILED_PRECONDITION] round 1 is aggregated" in result.stdout


def test_the_readme_first_screen_says_how_to_run_fedledger_after_make_demo():
    first_screen = README.split("\n## ", 1)[0]
    makefile = (REPO / "Makefile").read_text()
    venv = re.search(r"^VENV := (\S+)$", makefile, re.M)
    assert venv and "\t$(VENV)/bin/fedledger demo" in makefile  # what make demo installs and runs
    assert f"`{venv.group(1)}/bin/fedledger report demo-out`" in first_screen
    assert f"`source {venv.group(1)}/bin/activate`" in first_screen

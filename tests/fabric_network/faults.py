"""Faults injected into the native network: processes stopped by their recorded PIDs, then revived by
``network/network-up.sh`` (which restarts exactly the dead processes on their ledgers)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fedledger.network.health import raft_leader
from fedledger.network.tools import wait_endorsable

from .fabric_cli import REPO

__all__ = ["dying", "killed", "leader_orderer", "revive"]


def _pid(run: Path, name: str) -> int:
    return int((run / "pids" / f"{name}.pid").read_text())


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def leader_orderer(run: Path, limit_s: float = 60) -> str:
    """The process name (``orderer2``) of the channel's Raft leader, once there is one."""
    deadline = time.monotonic() + limit_s
    while (number := raft_leader(run)) is None:
        assert time.monotonic() < deadline, f"no Raft leader within {limit_s} s"
        time.sleep(0.2)
    return f"orderer{number}"


def revive(run: Path) -> None:
    """Restarts the dead processes, then waits until every org's gateway can plan endorsements again."""
    proc = subprocess.run(["network/network-up.sh"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    wait_endorsable(run, 120)


@contextmanager
def killed(run: Path, name: str) -> Iterator[None]:
    """``name`` (``peer0.org1``, ``orderer2``) killed for the duration of the block, then revived."""
    _kill(_pid(run, name))
    try:
        yield
    finally:
        revive(run)


@contextmanager
def dying(run: Path, name: str, *, after: float = 3.0) -> Iterator[None]:
    """``name`` hangs now (SIGSTOP: its connections stay open, it answers nothing) and is killed ``after`` seconds
    later, then revived when the block ends: whatever it accepted meanwhile and had not passed on is lost, as
    when a Raft leader dies with transactions in flight. (Left hanging, it would also hold the peers' block
    delivery until their keepalive gives up on it, which a crash does not.)"""
    pid = _pid(run, name)
    os.kill(pid, signal.SIGSTOP)
    timer = threading.Timer(after, _kill, (pid,))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        _kill(pid)
        revive(run)

"""Per-process health of the native network, for ``make network-status`` and the fault tests.

    python network/health.py RUN_DIR

One row per process the network scripts started (``RUN_DIR/pids``): its port, whether the
process is alive and listening, its operations ``/healthz``, and for an orderer its Raft role on
the channel, read from the ``consensus_etcdraft_*`` gauges of its Prometheus ``/metrics``.
Only the standard library.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fedledger.chaincode.names import DEFAULT_CHANNEL

__all__ = ["ProcessHealth", "main", "processes", "raft_leader", "raft_role"]

TIMEOUT = 2.0


@dataclass(frozen=True)
class ProcessHealth:
    name: str
    address: str
    pid: int | None
    alive: bool
    listening: bool
    healthz: str  # "OK", the failed checks, "unreachable", or "" when the process has no operations endpoint
    raft: str  # orderers: "leader", "follower" or "unknown"; "" otherwise

    @property
    def up(self) -> bool:
        return self.alive and self.listening and self.healthz in ("OK", "")

    def line(self) -> str:
        state = "up" if self.up else "DOWN"
        extra = " ".join(
            x for x in (f"healthz {self.healthz}" if self.healthz else "", self.raft and f"raft {self.raft}") if x
        )
        pid = "-" if self.pid is None else str(self.pid)
        return f"  {self.name:<32} {self.address:<16} pid {pid:<8} {state:<5} {extra}".rstrip()


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT):
            return True
    except OSError:
        return False


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.read().decode()
    except urllib.error.HTTPError as error:  # /healthz answers 503 with the failed checks
        return error.read().decode()
    except (OSError, ValueError):
        return None


def _healthz(operations: str) -> str:
    body = _get(f"{operations}/healthz")
    if body is None:
        return "unreachable"
    try:
        doc = json.loads(body)
    except ValueError:
        return "unreadable"
    if doc.get("status") == "OK":
        return "OK"
    return "FAILED " + ",".join(str(check.get("component")) for check in doc.get("failed_checks") or ())


def raft_role(operations: str, channel: str = DEFAULT_CHANNEL) -> str:
    """``leader``/``follower`` of the orderer whose operations endpoint is ``operations``; ``unknown`` if it
    does not answer or has no Raft chain for ``channel``."""
    metrics = _get(f"{operations}/metrics")
    match = re.search(rf'^consensus_etcdraft_is_leader{{channel="{re.escape(channel)}"}} (\S+)$', metrics or "", re.M)
    if match is None:
        return "unknown"
    return "leader" if float(match.group(1)) == 1 else "follower"


def raft_leader(run: Path, channel: str = DEFAULT_CHANNEL) -> int | None:
    """The number (1..3) of the orderer that is the Raft leader of ``channel`` now, or None."""
    doc = json.loads((run / "network.json").read_text())
    for number, orderer in enumerate(doc["orderers"], start=1):
        if raft_role(orderer["operations"], channel) == "leader":
            return number
    return None


def _pid(run: Path, name: str) -> tuple[int | None, bool]:
    try:
        pid = int((run / "pids" / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None, False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid, False
    except PermissionError:
        pass
    return pid, True


def processes(run: Path) -> list[ProcessHealth]:
    """The health of every orderer, peer and chaincode server of the network in ``run``."""
    doc = json.loads((run / "network.json").read_text())
    channel = doc.get("channel", DEFAULT_CHANNEL)
    rows: list[ProcessHealth] = []

    def row(name: str, address: str, operations: str = "", raft: bool = False) -> None:
        pid, alive = _pid(run, name)
        rows.append(
            ProcessHealth(
                name,
                address,
                pid,
                alive,
                _listening(address),
                _healthz(operations) if operations else "",
                raft_role(operations, channel) if raft else "",
            )
        )

    for number, orderer in enumerate(doc["orderers"], start=1):
        row(f"orderer{number}", orderer["endpoint"], orderer["operations"], raft=True)
    organizations = sorted(doc["organizations"].values(), key=lambda org: org["mspid"])
    for org in organizations:
        row(org["peer"]["name"].split(".example.com")[0], org["peer"]["endpoint"], org["peer"]["operations"])
    for org in organizations:
        n = re.sub(r"\D", "", org["mspid"])
        host, _, port = org["chaincode_server"].rpartition(":")
        for chaincode_dir in sorted(p for p in (run / "chaincode").glob("*") if p.is_dir()):
            delta_file = chaincode_dir / "port_delta"
            delta = int(delta_file.read_text()) if delta_file.is_file() else 0
            cc = chaincode_dir.name
            name = f"ccserver.org{n}" if cc == doc.get("chaincode") else f"ccserver-{cc}.org{n}"
            if (chaincode_dir / f"org{n}").is_dir():
                row(name, f"{host}:{int(port) - delta}")
    return rows


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    run = Path(argv[0])
    rows = processes(run)
    for health in rows:
        print(health.line())
    leaders = [h.name for h in rows if h.raft == "leader"]
    print(f"raft leader: {', '.join(leaders) if leaders else 'none (no orderer reports leading: no quorum?)'}")
    down = [h.name for h in rows if not h.up]
    if down:
        print(f"down: {' '.join(down)} (make network-up restarts them; logs in {run / 'logs'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

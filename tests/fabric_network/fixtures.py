"""Session fixtures for tests against the native Fabric network (``make network-up``).

Loaded by tests/fabric_network/conftest.py; other test folders can load them too with
``pytest_plugins = ["tests.fabric_network.fixtures"]`` in the root conftest.

``fabric_network`` brings the network up if ``run/network/READY`` is missing, and takes it down
at the end only if it brought it up (set FEDLEDGER_KEEP_NETWORK=1 to keep it anyway). It skips
when the pinned Fabric binaries cannot be had on this machine (``make fabric-bin`` fails).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .fabric_cli import REPO, FabricCli, clock_offset_file, network_dir

COMPAT_CC = "fedledger_compat"
COMPAT_CONTRACT = REPO / "tests" / "fabric_network" / "compat_contract.py"


def _wait_not_restarting(limit_s: float = 300) -> None:
    restarting = network_dir() / "RESTARTING"
    deadline = time.monotonic() + limit_s
    while restarting.exists() and time.monotonic() < deadline:
        time.sleep(1)


def _chaincode_servers_without_test_clock() -> list[int]:
    """PIDs of running chaincode servers that were started without the tests' clock offset file."""
    missing = []
    for pid_file in (network_dir() / "pids").glob("ccserver*.pid"):
        pid = int(pid_file.read_text())
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"FEDLEDGER_CLOCK_OFFSET_FILE={clock_offset_file()}".encode() not in environ:
            missing.append(pid)
    return missing


@pytest.fixture(scope="session")
def fabric_network() -> Iterator[FabricCli]:
    started = False
    os.environ["FEDLEDGER_CLOCK_OFFSET_FILE"] = str(clock_offset_file())
    _wait_not_restarting()
    if not (network_dir() / "READY").exists():
        binaries = subprocess.run(["make", "-s", "fabric-bin"], cwd=REPO, capture_output=True, text=True)
        if binaries.returncode != 0:
            pytest.skip(f"Fabric binaries unavailable: {binaries.stderr.strip()[-400:]}")
        up = subprocess.run(["make", "-s", "network-up"], cwd=REPO, capture_output=True, text=True)
        if up.returncode != 0:
            pytest.fail(f"make network-up failed:\n{up.stderr[-4000:]}")
        started = True
    else:
        # Chaincode servers started by someone else lack the test clock: restart them (network-up.sh revives
        # dead processes of an existing network; a healthy one is left alone).
        for pid in _chaincode_servers_without_test_clock():
            os.kill(pid, signal.SIGTERM)
        subprocess.run(["network/network-up.sh"], cwd=REPO, check=True, capture_output=True)
    clock_offset_file().write_text("0")
    yield FabricCli()
    if started and os.environ.get("FEDLEDGER_KEEP_NETWORK") != "1":
        pids = [int(p.read_text()) for p in (network_dir() / "pids").glob("*.pid")]
        subprocess.run(["make", "-s", "network-down"], cwd=REPO, check=False)
        survivors = [pid for pid in pids if alive(pid)]
        assert not survivors, f"make network-down left processes running: {survivors}"
        assert not network_dir().exists()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="session")
def fabric_testbed(fabric_network: FabricCli, tmp_path_factory: pytest.TempPathFactory):
    """What the contract suites need to run a Consortium on the network: identities, a fresh chaincode
    namespace per test, the block index (tests/fabric_network/consortium.py)."""
    try:
        from .consortium import FabricTestbed
    except ImportError as exc:
        pytest.skip(f"the Fabric backend needs the 'fabric' extra: {exc}")
    testbed = FabricTestbed(fabric_network.run, tmp_path_factory.mktemp("fabric-identities"))
    yield testbed
    testbed.close()


@pytest.fixture(scope="session")
def compat_cc(fabric_network: FabricCli) -> str:
    """Serves tests/fabric_network/compat_contract.py as chaincode ``fedledger_compat`` (servers on
    7998, 9998, ...), next to ``fedledger``. Redeployed once per session so the servers run the
    current test contract; the install and approvals are reused (deterministic package IDs)."""
    env = {
        **os.environ,
        "CC_NAME": COMPAT_CC,
        "CC_PORT_DELTA": "1",
        "FEDLEDGER_CONTRACT": f"{COMPAT_CONTRACT}:CompatTestContract",
    }
    proc = subprocess.run(["network/deploy-chaincode.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"deploying {COMPAT_CC} failed:\n{proc.stderr[-4000:]}")
    return COMPAT_CC

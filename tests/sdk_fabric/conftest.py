"""Fixtures for the Fabric backend tests.

The real-network tests use the network of ``make network-up`` (``run/network``, or
``$FEDLEDGER_NETWORK_DIR``). They never start, restart or stop it: when ``READY`` is there they
use it as it is (waiting while ``RESTARTING`` says network-up is reviving processes); otherwise
they ask for the session fixture that brings it up (``fabric_network``, from
tests/fabric_network/conftest.py once the root conftest loads it), and skip if there is none.

Without the ``fabric`` extra (grpcio, hyperledger-fabric-protos) only the identity tests run.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

if importlib.util.find_spec("fabric_protos") is None or importlib.util.find_spec("grpc") is None:
    collect_ignore = ["test_protocol.py", "test_backend_fake.py", "test_profile.py", "test_fabric_network.py"]


@pytest.fixture(scope="session")
def fabric_network_dir() -> Path:
    """Where the network's network.json, logs and crypto material are."""
    return Path(os.environ.get("FEDLEDGER_NETWORK_DIR", REPO / "run" / "network"))


@pytest.fixture(scope="session")
def fabric_profile(request: pytest.FixtureRequest, fabric_network_dir: Path):
    """The running network's description (a NetworkProfile); brings nothing up or down itself."""
    from fedledger.sdk.fabric import load_network_dir

    if not (fabric_network_dir / "READY").exists():
        try:
            request.getfixturevalue("fabric_network")
        except pytest.FixtureLookupError:
            pytest.skip(f"no Fabric network: {fabric_network_dir / 'READY'} is missing (run `make network-up`)")
    restarting = fabric_network_dir / "RESTARTING"
    deadline = time.monotonic() + 300
    while restarting.exists() and time.monotonic() < deadline:
        time.sleep(1)
    return load_network_dir(fabric_network_dir)

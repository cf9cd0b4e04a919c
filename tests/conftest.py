from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .support import BACKENDS, Consortium, EmbeddedLedgerConsortium, UpdateFactory

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The native Fabric network fixture (brought up once per test run, torn down if this run started it).
pytest_plugins = ["tests.fabric_network.fixtures"]


@pytest.fixture(params=BACKENDS)
def consortium(request: pytest.FixtureRequest, tmp_path) -> Iterator[Consortium]:
    """A fresh consortium on each backend: an embedded ledger, or a new chaincode namespace on the
    native Fabric network (brought up once per run). Select one with ``only_on("embedded")``."""
    if request.param == "fabric":
        network: Consortium = request.getfixturevalue("fabric_testbed").consortium()
    else:
        network = EmbeddedLedgerConsortium(tmp_path / "consortium")
    yield network
    network.close()


@pytest.fixture
def updates():
    return UpdateFactory(seed=7)

from __future__ import annotations

import os

import pytest

from .support import Consortium, UpdateFactory

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The native Fabric network fixture (brought up once per test run, torn down if this run started it).
pytest_plugins = ["tests.fabric_network.fixtures"]


@pytest.fixture
def consortium(tmp_path):
    network = Consortium(tmp_path / "consortium")
    yield network
    network.close()


@pytest.fixture
def updates():
    return UpdateFactory(seed=7)

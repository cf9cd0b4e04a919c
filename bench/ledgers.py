"""Fixtures the ledger studies share: the benchmark update, the ledger under test, and a Fabric network of its own.

The update is a LoRA-like delta of two adapted projections (rank 8, width 800): 4 x 6400 float32 = 100 KiB,
written with the shared codec. :class:`LedgerUnderTest` is one ledger (a fresh embedded consortium, or a native
Fabric network) and the clients a study opened on it, each with its own identity. :func:`bench_network` brings
a fresh network up on its own ports and folder (``make network-up`` with
``FEDLEDGER_PORT_OFFSET``/``FEDLEDGER_NETWORK_DIR``) and takes it down afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fedledger.bench.harness import ROOT, comma_list
from fedledger.chaincode import errors as contract_errors
from fedledger.chaincode.embedded.bootstrap import create_consortium, open_consortium
from fedledger.chaincode.privacy_budget import DPParams
from fedledger.sdk.client import FedLedgerClient, grant_role
from fedledger.sdk.connection import LedgerLocation, open_client
from fedledger.sdk.embedded import forget_ledger
from fedledger.tensors import encode

if TYPE_CHECKING:
    from fedledger.sdk.fabric.local import LocalFabricNetwork

logger = logging.getLogger("bench.ledgers")

REPO = ROOT

SHAPES: dict[str, tuple[int, int]] = {
    "layers.0.q_proj.lora_A": (8, 800),
    "layers.0.q_proj.lora_B": (800, 8),
    "layers.1.q_proj.lora_A": (8, 800),
    "layers.1.q_proj.lora_B": (800, 8),
}
SCHEMA = hashlib.sha256(b"fedledger bench text,label").hexdigest()
# DP-SGD parameters of every benchmark update: the contract composes their ε (~0.03 each with RDP), far below
# any budget even after many rounds
PRIVACY = DPParams(noise_multiplier=10.0, sample_rate=0.001, steps=100, delta=1e-5)
SAMPLES = 100
BACKENDS = ("embedded", "fabric")


def chosen_backends(p: argparse.ArgumentParser, text: str) -> list[str]:
    """The ledgers a ``--backends`` value names (comma-separated); an unknown one is a usage error of ``p``."""
    backends = comma_list(text, str.strip)
    if unknown := set(backends) - set(BACKENDS):
        p.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    return backends


def make_update(rng: np.random.Generator) -> bytes:
    """One benchmark update: random LoRA-like float32 tensors of :data:`SHAPES`, encoded."""
    tensors = {k: (0.01 * rng.standard_normal(s)).astype(np.float32) for k, s in SHAPES.items()}
    return encode(tensors)


def zero_model() -> bytes:
    """The genesis adapter of the ledger studies: zeros of :data:`SHAPES`, encoded."""
    return encode({k: np.zeros(s, np.float32) for k, s in SHAPES.items()})


class LedgerUnderTest:
    """One ledger a study measures and every client it opened on it (closed by :meth:`close`).

    Build it with :meth:`embedded` (a fresh consortium in a temporary folder, every client in this process) or
    :meth:`fabric` (the native network in a folder; new client identities are issued from the org CAs into
    ``issued``). Embedded clients come from :meth:`LedgerLocation.client`. Fabric clients are built on their
    organisation's gateway backend with the options a study asks for (``committed_on``, timeouts), which
    :func:`~fedledger.sdk.connection.open_client` does not take: it makes every client wait until each
    organisation's peer has the block, which would add to the latency the studies measure.
    """

    def __init__(
        self,
        name: str,
        location: LedgerLocation,
        *,
        members: LocalFabricNetwork | None = None,
        folder: tempfile.TemporaryDirectory[str] | None = None,
    ) -> None:
        self.name = name
        self.location = location
        self._members = members  # Fabric: issues identities, knows each org's gateway peer
        self._folder = folder  # the TemporaryDirectory of an embedded consortium, or of issued identities
        self._backends: dict[int, Any] = {}
        self._admins: dict[str, FedLedgerClient] = {}
        if members is not None:
            self.member_msps = sorted(o.mspid for o in members.profile.orgs.values())
        else:
            self.member_msps = sorted(open_consortium(location.path).organizations)
        #: The organisations whose members the studies create, alternating (the first two by MSP ID).
        self.orgs = self.member_msps[:2]

    @classmethod
    def embedded(cls, *, name: str = "embedded", prefix: str = "fedledger-bench-") -> LedgerUnderTest:
        folder = tempfile.TemporaryDirectory(prefix=prefix)
        create_consortium(Path(folder.name))
        return cls(name, LedgerLocation("embedded", Path(folder.name)), folder=folder)

    @classmethod
    def fabric(
        cls, network_dir: Path, issued: Path | tempfile.TemporaryDirectory[str], *, name: str = "fabric"
    ) -> LedgerUnderTest:
        """``issued``: where new identities go; a TemporaryDirectory is removed by :meth:`close`."""
        from fedledger.sdk.fabric.local import LocalFabricNetwork

        if isinstance(issued, tempfile.TemporaryDirectory):
            folder, issued = issued, Path(issued.name)
        else:
            folder = None
        members = LocalFabricNetwork(network_dir, issued)
        return cls(name, members.location, members=members, folder=folder)

    @property
    def is_fabric(self) -> bool:
        return self.location.kind == "fabric"

    def client(self, mspid: str, name: str, *, admin: bool = False, **options: Any) -> FedLedgerClient:
        """A client signing as member ``name`` of ``mspid`` (issued on first use); ``options`` go to the Fabric
        gateway backend (e.g. ``committed_on``, ``endorse_timeout``)."""
        if self._members is None:
            return self.location.client(mspid, name, admin=admin, **options)
        options.setdefault("committed_on", ())  # a trainer's latency ends at its own peer's commit status
        client = open_client(self.location, *self._members.identity(mspid, name, admin=admin), **options)
        self._backends[id(client)] = client.contract.backend
        return client

    def admins(self) -> dict[str, FedLedgerClient]:
        """A client of every member organisation's admin, by MSP ID (the benchmark plays every party)."""
        if not self._admins:
            self._admins = {mspid: self.client(mspid, "Admin", admin=True) for mspid in self.member_msps}
        return self._admins

    def enrol(self, client: FedLedgerClient, *, dataset_size: int, schema_hash: str) -> None:
        """Has ``client``'s organisation admin enrol it as a trainer (unless it already is)."""
        mspid, _, name = client.whoami()["id"].partition(":")
        with contextlib.suppress(contract_errors.FailedPrecondition):
            self.admins()[mspid].enrol_trainer(name, dataset_size=dataset_size, schema_hash=schema_hash)

    def grant(self, client: FedLedgerClient, role: str) -> None:
        """Has a quorum of the organisations' admins grant ``role`` to ``client``, which then registers."""
        grant_role(list(self.admins().values()), client.whoami()["id"], role)
        with contextlib.suppress(contract_errors.AlreadyExists):
            client.register(role)

    def backend(self, client: FedLedgerClient) -> Any:
        """The Fabric gateway backend of ``client`` (to time a transaction's steps one by one)."""
        return self._backends[id(client)]

    def release(self, clients: Sequence[FedLedgerClient]) -> None:
        """Closes the connections of ``clients`` (embedded clients hold none)."""
        for client in clients:
            if backend := self._backends.pop(id(client), None):
                backend.close()

    def retried(self) -> int:
        """Transactions the Fabric backends re-submitted after an MVCC conflict, over every open client."""
        return sum(b.retried for b in self._backends.values())

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
        if not self.is_fabric:
            forget_ledger(self.location.path / "ledger")
        if self._folder is not None:
            self._folder.cleanup()


def until_discovered(call: Callable[[], Any], limit: float = 120.0) -> Any:
    """Retries ``call`` while the gateway cannot plan endorsement yet.

    Right after network-up the peers' gossip has not yet told the gateway which peers run the
    chaincode ("no combination of peers can be derived which satisfy the endorsement policy").
    """
    from fedledger.sdk.errors import EndorseError

    deadline = time.monotonic() + limit
    while True:
        try:
            return call()
        except EndorseError as exc:
            if "endorsement policy" not in str(exc) or time.monotonic() > deadline:
                raise
            logger.info("gateway cannot plan endorsement yet (gossip discovery); retrying in 1 s")
            time.sleep(1)


@contextlib.contextmanager
def bench_network(network_dir: Path, port_offset: int, batch_timeout: str, keep: bool) -> Iterator[Path]:
    """A fresh native network of our own (separate ports and run folder), taken down afterwards.

    ``batch_timeout`` is the orderer's BatchTimeout (e.g. ``20ms``), or ``default`` for the repository's.
    """
    env = {**os.environ, "FEDLEDGER_PORT_OFFSET": str(port_offset), "FEDLEDGER_NETWORK_DIR": str(network_dir)}
    env.pop("FEDLEDGER_BATCH_TIMEOUT", None)
    if batch_timeout != "default":  # "default": whatever network/lib.sh configures
        env["FEDLEDGER_BATCH_TIMEOUT"] = batch_timeout

    def make(target: str) -> None:
        logger.info(
            "make %s (FEDLEDGER_NETWORK_DIR=%s FEDLEDGER_PORT_OFFSET=%d FEDLEDGER_BATCH_TIMEOUT=%s)",
            target,
            network_dir,
            port_offset,
            batch_timeout,
        )
        subprocess.run(
            ["make", "--no-print-directory", "-C", str(REPO), target],
            env=env,
            check=True,
            timeout=600,
            stdout=sys.stderr,
        )

    if network_dir.exists():
        make("network-down")  # a leftover of an interrupted run: start from a fresh ledger
    try:
        make("network-up")
        yield network_dir
    finally:
        if keep:
            logger.info("--keep-network: %s stays up", network_dir)
        else:
            make("network-down")


def configured_batch_timeout(network_dir: Path) -> str:
    """The BatchTimeout the network's channel was created with (from its configtx.yaml)."""
    config = network_dir / "config" / "configtx" / "configtx.yaml"
    match = re.search(r"^\s*BatchTimeout:\s*(\S+)", config.read_text(), re.M) if config.exists() else None
    return match.group(1) if match else "unknown"

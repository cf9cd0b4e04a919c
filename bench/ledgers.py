"""Fixtures the ledger studies share: the benchmark update, and a native Fabric network of a study's own.

The update is a LoRA-like delta of two adapted projections (rank 8, width 800): 4 x 6400 float32 = 100 KiB,
written with the shared codec. :func:`bench_network` brings a fresh network up on its own ports and folder
(``make network-up`` with ``FEDLEDGER_PORT_OFFSET``/``FEDLEDGER_NETWORK_DIR``) and takes it down afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.tensors import encode

from .harness import ROOT

logger = logging.getLogger("bench.ledgers")

REPO = ROOT

SHAPES: dict[str, tuple[int, int]] = {
    "layers.0.q_proj.lora_A": (8, 800),
    "layers.0.q_proj.lora_B": (800, 8),
    "layers.1.q_proj.lora_A": (8, 800),
    "layers.1.q_proj.lora_B": (800, 8),
}
SCHEMA = hashlib.sha256(b"fedledger bench text,label").hexdigest()
EPSILON = 0.001  # per update; far below any budget even after many rounds
SAMPLES = 100


def make_update(rng: np.random.Generator) -> bytes:
    tensors = {k: (0.01 * rng.standard_normal(s)).astype(np.float32) for k, s in SHAPES.items()}
    return encode(tensors)


def zero_model() -> bytes:
    return encode({k: np.zeros(s, np.float32) for k, s in SHAPES.items()})


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

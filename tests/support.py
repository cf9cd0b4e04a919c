"""Test helpers shared by the contract suites: a consortium of named clients on a ledger, and a
snapshot of everything the contract exposes, to prove that a rejected transaction changed nothing.

The consortium hides which ledger it runs on (the embedded ledger here, the native Fabric network in
tests/fabric_network/consortium.py); ``advance(seconds)`` moves the fake clock past deadlines: the clients'
(which stamp proposals) and the ledger's (the embedded ledger's own clock; on Fabric, the endorsers').
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save

from fedledger.chaincode.embedded.bootstrap import EmbeddedConsortium, create_consortium
from fedledger.chaincode.embedded.ledger import EmbeddedLedger
from fedledger.chaincode.embedded.msp import Organization, add_user
from fedledger.chaincode.names import CONTRACT_NAME, DEFAULT_CHANNEL
from fedledger.chaincode.privacy_budget import DPParams, steps_within
from fedledger.chaincode.records import Rules
from fedledger.identity import Identity, Signer, load_msp_identity
from fedledger.sdk.client import FedLedgerClient, with_quorum
from fedledger.sdk.embedded import forget_ledger, shared_ledger
from fedledger.sdk.gateway import Gateway, connect

SCHEMA = hashlib.sha256(b"text,label").hexdigest()
SHAPES = {"layer.0.lora_A": (8, 32), "layer.0.lora_B": (32, 8), "layer.1.lora_A": (8, 32), "layer.1.lora_B": (32, 8)}


BACKENDS = ["embedded", pytest.param("fabric", marks=pytest.mark.fabric)]
"""The params of the ``consortium`` fixture (tests/conftest.py): every contract test runs on both."""


def only_on(backend: str) -> pytest.MarkDecorator:
    """Runs a test on one backend only, for what exists on one ledger alone (raw embedded blocks...)."""
    chosen = [p for p in BACKENDS if (p if isinstance(p, str) else p.values[0]) == backend]
    assert chosen, f"unknown backend {backend!r}"
    return pytest.mark.parametrize("consortium", chosen, indirect=True)


Clock = Callable[[], float]


class FakeClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Consortium:
    """Named clients (``client("Org1MSP", "trainer1")`` is ``trainer1@org1.example.com``) on one ledger.

    The one interface the contract suites use, whichever ledger is underneath. A subclass says which CA
    issues an org's users (``issuer``), how a client connects (``_gateway``), how to look under the
    contract (``ledger_state``, ``blocks``) and how the ledger refuses a creator its MSP does not trust
    (``REFUSED_CREATOR``: the error codes it may carry and a pattern of its message).
    """

    channel = DEFAULT_CHANNEL
    chaincode = CONTRACT_NAME
    REFUSED_CREATOR: tuple[tuple[str, ...], str]

    def __init__(self) -> None:
        self.clock = FakeClock()
        self._clients: dict[tuple[str, str], FedLedgerClient] = {}
        self._gateways: list[Gateway] = []

    # -- what a ledger provides ----------------------------------------------------------------
    def issuer(self, mspid: str) -> Organization:
        """The CA (and MSP folders) of ``mspid``: it issues users on demand."""
        raise NotImplementedError

    def _gateway(self, identity: Identity, signer: Signer, clock: Clock) -> Gateway:
        """A connection whose proposals carry the time of ``clock``."""
        raise NotImplementedError

    def ledger_state(self) -> Any:
        """What lies under the contract; equal values mean no transaction was committed."""
        raise NotImplementedError

    def blocks(self) -> list[bytes]:
        """The raw bytes of every block holding a transaction of this consortium."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------
    def identity(self, mspid: str, name: str, *, admin: bool = False) -> tuple[Identity, Signer]:
        """The identity ``name@domain`` issued by ``mspid``'s CA on first use (OU=admin or OU=client)."""
        return load_msp_identity(add_user(self.issuer(mspid), name, ou="admin" if admin else "client"), mspid)

    def connect(
        self, identity: Identity, signer: Signer, *, clock: Callable[[], float] | None = None
    ) -> FedLedgerClient:
        """A client signing as any identity, also one the ledger does not trust; ``clock``: its own idea of the
        time (default: the consortium's), to stamp proposals that are off."""
        gateway = self._gateway(identity, signer, clock or self.clock)
        self._gateways.append(gateway)
        network = gateway.get_network(self.channel)
        return FedLedgerClient(network.get_contract(self.chaincode), network)

    def client(self, mspid: str, name: str, *, admin: bool = False) -> FedLedgerClient:
        key = (mspid, name)
        if key not in self._clients:
            self._clients[key] = self.connect(*self.identity(mspid, name, admin=admin))
        return self._clients[key]

    def admin(self, mspid: str = "Org1MSP") -> FedLedgerClient:
        return self.client(mspid, "Admin", admin=True)

    def now(self) -> float:
        return self.clock()

    def advance(self, seconds: float) -> None:
        """Moves the clock that stamps every transaction (past deadlines, dispute windows...)."""
        self.clock.offset += seconds

    def close(self) -> None:
        for gateway in self._gateways:
            gateway.close()


class EmbeddedLedgerConsortium(Consortium):
    """A fresh embedded ledger in ``base``, with its own CAs."""

    REFUSED_CREATOR = (("CREATOR_NOT_TRUSTED",), "not issued by the CA of")

    def __init__(self, base: Path, organizations: dict[str, str] | None = None) -> None:
        super().__init__()
        self.embedded: EmbeddedConsortium = create_consortium(base, organizations)
        self.ledger.clock = self.clock  # the ledger stamps transactions with its own clock: move that one

    def issuer(self, mspid: str) -> Organization:
        return self.embedded.organizations[mspid]

    def _gateway(self, identity: Identity, signer: Signer, clock: Clock) -> Gateway:
        return connect(identity, signer=signer, ledger_dir=self.embedded.ledger_dir, clock=clock)

    @property
    def ledger(self) -> EmbeddedLedger:
        return shared_ledger(self.embedded.ledger_dir)

    def ledger_state(self) -> tuple[int, dict[bytes, bytes]]:
        """The height and the raw world state: every record any query could read."""
        return self.ledger.height(), self.ledger.state_snapshot()

    def blocks(self) -> list[bytes]:
        return [block for _n, _h, block, _s in self.ledger.blocks(0)]

    def close(self) -> None:
        super().close()
        forget_ledger(self.embedded.ledger_dir)


def participant_id(mspid: str, name: str) -> str:
    domain = {"Org1MSP": "org1.example.com", "Org2MSP": "org2.example.com", "Org3MSP": "org3.example.com"}[mspid]
    return f"{mspid}:{name}@{domain}"


#: Every tensor payload the tests made (tensors_bytes), by SHA-256: the tests' update store, from which
#: tests/aggregates.py builds and commits a round's honest aggregate.
PAYLOADS: dict[str, bytes] = {}


def tensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    data = save({k: np.ascontiguousarray(v, dtype=v.dtype) for k, v in tensors.items()})
    PAYLOADS[hashlib.sha256(data).hexdigest()] = data
    return data


def zero_model() -> bytes:
    return tensors_bytes({k: np.zeros(s, np.float32) for k, s in SHAPES.items()})


class UpdateFactory:
    """Honest updates share a direction plus noise; attacks are transformations of an honest one."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.direction = {k: self.rng.normal(size=s) for k, s in SHAPES.items()}

    def honest(self) -> dict[str, np.ndarray]:
        return {
            k: (0.01 * self.direction[k] + 0.005 * self.rng.normal(size=s)).astype(np.float32)
            for k, s in SHAPES.items()
        }

    def bytes(self, tensors: dict[str, np.ndarray] | None = None) -> bytes:
        return tensors_bytes(tensors if tensors is not None else self.honest())


def world(client: FedLedgerClient) -> dict[str, Any]:
    """Everything the contract lets a participant read: equal snapshots mean nothing changed."""
    snapshot: dict[str, Any] = {}

    def capture(name: str, read: Callable[[], Any]) -> None:
        try:
            value = read()
        except Exception as exc:  # a missing record is part of the state too
            value = f"error: {type(exc).__name__}"
        snapshot[name] = value

    capture("rules", lambda: asdict(client.rules()))
    capture("participants", lambda: [asdict(p) for p in client.participants()])
    capture("rounds", lambda: [asdict(r) for r in client.rounds()])
    rounds = snapshot["rounds"] if isinstance(snapshot["rounds"], list) else []
    for r in rounds:
        number = r["number"]
        capture(f"updates/{number}", lambda n=number: [asdict(u) for u in client.updates(n)])
    capture("anomalies", lambda: [asdict(a) for a in client.anomalies()])
    capture("disputes", lambda: [asdict(d) for d in client.disputes()])
    capture("balances", client.balances)
    capture("latest_model", lambda: asdict(client.latest_model()))
    return snapshot


@functools.cache
def dp(epsilon: float) -> DPParams:
    """DP-SGD parameters (noise 2.0, sample rate 0.01, δ 1e-5) whose ε, by the RDP accountant, is just
    within ``epsilon``: the contract computes ε from these, so tests state the budget they mean."""
    return steps_within(epsilon, noise_multiplier=2.0, sample_rate=0.01, delta=1e-5)


def common_name(mspid: str, name: str) -> str:
    return participant_id(mspid, name).split(":", 1)[1]


def admins(consortium: Consortium) -> list[FedLedgerClient]:
    """A client of every member organisation's admin, the consortium's founder first."""
    founder = consortium.admin()
    members = founder.rules().member_msps
    return [founder, *(consortium.admin(m) for m in members if m != "Org1MSP")]


def enrol(
    consortium: Consortium, mspid: str, name: str, *, dataset_size: int = 1000, schema: str = SCHEMA
) -> FedLedgerClient:
    """``name`` of ``mspid`` enrolled by its organisation's admin, then registered as a trainer."""
    consortium.admin(mspid).enrol_trainer(common_name(mspid, name), dataset_size=dataset_size, schema_hash=schema)
    client = consortium.client(mspid, name)
    client.register("trainer")
    return client


def grant(consortium: Consortium, mspid: str, name: str, role: str) -> FedLedgerClient:
    """``name`` of ``mspid`` granted ``role`` by a quorum of the member organisations, then registered."""
    with_quorum(admins(consortium), lambda admin: admin.propose_role(participant_id(mspid, name), role))
    client = consortium.client(mspid, name)
    client.register(role)
    return client


def change_rules(consortium: Consortium, changes: dict[str, Any]) -> Rules:
    """A rules change approved by a quorum of the member organisations."""
    with_quorum(admins(consortium), lambda admin: admin.propose_rules(changes))
    return consortium.admin().rules()


def ready_round(
    consortium: Consortium,
    *,
    trainers: int = 5,
    rules: dict[str, Any] | None = None,
    deadline_in: float = 3600.0,
) -> tuple[FedLedgerClient, list[FedLedgerClient], str]:
    """Initialised consortium, an aggregator, enrolled trainers (alternating orgs) and round 1 open."""
    admin = consortium.admin()
    admin.init_consortium({"member_msps": ["Org1MSP", "Org2MSP"], **(rules or {})})
    aggregator = grant(consortium, "Org1MSP", "aggregator", "aggregator")
    genesis = aggregator.register_genesis_model(zero_model(), name="test-adapter")
    clients = [enrol(consortium, "Org1MSP" if i % 2 == 0 else "Org2MSP", f"trainer{i}") for i in range(trainers)]
    aggregator.open_round(1, base_model=genesis.hash, deadline=consortium.now() + deadline_in)
    return aggregator, clients, genesis.hash

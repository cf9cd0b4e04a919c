"""Secret-shared rounds as tests play them: every party in one process, on either ledger."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from fedledger import shares
from fedledger.chaincode.aggregation import ServerOptimizer, aggregate_state
from fedledger.chaincode.errors import PermissionDenied
from fedledger.chaincode.share_protocol import mean_of_sums
from fedledger.chaincode.weights import WEIGHT_UNITS
from fedledger.sdk.client import FedLedgerClient
from fedledger.tensors import decode, encode, manifest, sha256_hex

from .support import Consortium, dp, enrol, grant, participant_id, zero_model

ORGS = ("Org1MSP", "Org2MSP")
MANIFEST = manifest(decode(zero_model()))


@dataclass
class SharedRound:
    aggregator: FedLedgerClient
    trainers: list[FedLedgerClient]
    admins: dict[str, FedLedgerClient]
    keys: dict[str, shares.X25519PrivateKey]
    genesis: str
    sent: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # participant -> its update
    sealed: dict[str, dict[str, bytes]] = field(default_factory=dict)  # participant -> org -> sealed share

    def submit(self, number: int, trainer: FedLedgerClient, update: dict[str, np.ndarray], samples: int = 100):
        pid = trainer.whoami()["id"]
        record = trainer.round(number)
        recipients = {h["org"]: self.keys[h["org"]].public_key() for h in record.share_holders}
        parts = shares.share_update(
            update, recipients, round=number, participant=pid, manifest=MANIFEST, total_weight=WEIGHT_UNITS
        )
        self.sent[pid] = update
        self.sealed[pid] = {p.org: p.sealed for p in parts}
        return trainer.submit_shared_update(
            number, [p.commitment for p in parts], samples=samples, privacy=dp(1.0), train_loss=0.4
        )

    def opened(self, number: int, org: str, participants) -> dict[str, bytes]:
        out = {}
        for pid in participants:
            _share, data = shares.open_share(
                self.sealed[pid][org], self.keys[org], org=org, round=number, participant=pid, manifest=MANIFEST
            )
            out[pid] = data
        return out

    def holders(self, number: int) -> list[str]:
        return [h["org"] for h in self.aggregator.round(number).share_holders]

    def sketch_all(self, number: int, previous: dict[str, bytes] | None = None) -> None:
        pids = [u.participant for u in self.aggregator.updates(number)]
        for org in self.holders(number):
            self.admins[org].submit_share_sketches(
                number, org, self.opened(number, org, pids), previous=(previous or {}).get(org)
            )

    def org_sum(self, number: int, org: str) -> bytes:
        accepted = sorted((u for u in self.aggregator.updates(number) if u.status == "accepted"), key=lambda u: u.hash)
        opened = self.opened(number, org, [u.participant for u in accepted])
        total = shares.sum_shares(
            [shares.Share.from_bytes(opened[u.participant], MANIFEST) for u in accepted], [u.weight for u in accepted]
        )
        return total.to_bytes()

    def sum_all(self, number: int) -> dict[str, bytes]:
        accepted = [u.participant for u in self.aggregator.updates(number) if u.status == "accepted"]
        for org in self.holders(number):
            self.admins[org].submit_share_sum(number, org, self.opened(number, org, accepted))
        return {org: self.org_sum(number, org) for org in self.holders(number)}

    def model_of(self, number: int, sums: dict[str, bytes], base: bytes) -> bytes:
        accepted = [u for u in self.aggregator.updates(number) if u.status == "accepted"]
        mean = mean_of_sums(
            [shares.Share.from_bytes(b, MANIFEST).values for b in sums.values()],
            scale=self.aggregator.round(number).share_scale,
            total_weight=sum(u.weight for u in accepted),
        )
        new, _m, _v = aggregate_state(decode(base), [(mean, 1)], ServerOptimizer("fedavg"))
        return encode(new, like=MANIFEST)

    def commit(self, number: int, base: bytes, sums: dict[str, bytes] | None = None):
        sums = sums or self.sum_all(number)
        model = self.model_of(number, sums, base)
        hashes = [u.hash for u in self.aggregator.updates(number) if u.status == "accepted"]
        return self.aggregator.commit_shared_aggregate(number, model, base=base, sums=sums, update_hashes=hashes), model


def shared_round(consortium, *, trainers: int = 5, rules: dict | None = None, keys: bool = True) -> SharedRound:
    admin = consortium.admin()
    admin.init_consortium({"member_msps": list(ORGS), "detector_min_updates": 4, **(rules or {})})
    aggregator = grant(consortium, "Org1MSP", "aggregator", "aggregator")
    genesis = aggregator.register_genesis_model(zero_model(), name="test-adapter")
    admins = {org: consortium.admin(org) for org in ORGS}
    org_keys = {org: shares.generate_key() for org in ORGS}
    if keys:
        for org in ORGS:
            admins[org].register_share_key(shares.public_key_pem(org_keys[org]))
    clients = [enrol(consortium, ORGS[i % 2], f"trainer{i}") for i in range(trainers)]
    aggregator.open_round(1, base_model=genesis.hash, deadline=consortium.now() + 3600)
    return SharedRound(aggregator, clients, admins, org_keys, genesis.hash)


def submit_round(run: SharedRound, updates, number: int = 1, *, attacker_scale: float | None = -10.0) -> None:
    for i, trainer in enumerate(run.trainers):
        tensors = updates.honest()
        if attacker_scale is not None and i == len(run.trainers) - 1:
            tensors = {k: v * attacker_scale for k, v in tensors.items()}
        run.submit(number, trainer, tensors, samples=100 + 10 * i)


def organisation_joins(run: SharedRound, consortium: Consortium, updates, admit: Callable[[], object]) -> None:
    """Round 1 with Org1 and Org2 as holders; Org3 is admitted (``admit``) and registers its key while round 1
    runs; round 2 splits every update three ways and completes."""
    submit_round(run, updates)
    run.aggregator.close_round(1)
    admit()
    run.admins["Org3MSP"] = consortium.admin("Org3MSP")
    run.keys["Org3MSP"] = shares.generate_key()
    run.admins["Org3MSP"].register_share_key(shares.public_key_pem(run.keys["Org3MSP"]))
    assert run.holders(1) == list(ORGS)  # a round's holders are fixed when it opens
    with pytest.raises(PermissionDenied, match="holds no share of round 1"):
        run.admins["Org3MSP"].submit_share_sketches(1, "Org3MSP", {})
    run.sketch_all(1)
    run.aggregator.finalize_round(1)
    sums = run.sum_all(1)
    model, model_bytes = run.commit(1, zero_model(), sums)
    run.aggregator.open_round(2, base_model=model.hash, deadline=consortium.now() + 3600)
    assert run.holders(2) == ["Org1MSP", "Org2MSP", "Org3MSP"]
    submit_round(run, updates, number=2)
    assert all(len(u.share_commitments) == 3 for u in run.aggregator.updates(2))
    run.aggregator.close_round(2)
    run.sketch_all(2, previous=sums)  # Org3 held nothing in round 1, so it sends no previous sum
    finalized = run.aggregator.finalize_round(2)
    assert finalized.direction_round == 1 and finalized.rejected == [participant_id("Org1MSP", "trainer4")]
    second, second_bytes = run.commit(2, model_bytes)
    assert second.version == 2 and second.hash == sha256_hex(second_bytes)
    assert [p.org for p in run.aggregator.org_shares(2)] == ["Org1MSP", "Org2MSP", "Org3MSP"]

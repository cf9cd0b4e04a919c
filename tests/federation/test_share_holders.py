"""The organisations' share holders and the aggregator over the embedded ledger, every party a real class: bad
shares are refused and named, and a round whose organisation is down waits and resumes without losing anything."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger import shares
from fedledger.chaincode.errors import FailedPrecondition
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.store import UpdateStore
from fedledger.trainer.aggregator import Aggregator, SharesPendingError
from fedledger.trainer.member import seal_update
from fedledger.trainer.rounds import RoundDriver
from fedledger.trainer.share_holder import ShareHolder, load_or_create_share_key

from ..support import SHAPES, EmbeddedLedgerConsortium, dp, enrol, grant

ORGS = ("Org1MSP", "Org2MSP")


class World:
    def __init__(self, tmp_path) -> None:
        self.consortium = EmbeddedLedgerConsortium(tmp_path / "consortium")
        self.store = UpdateStore(tmp_path / "store")  # no key: the rounds are secret-shared
        admin = self.consortium.admin()
        admin.init_consortium({"member_msps": list(ORGS), "detector_min_updates": 4})
        self.holders = {
            org: ShareHolder(
                self.consortium.admin(org),
                self.store,
                load_or_create_share_key(tmp_path / "keys" / f"{org}.pem"),
                org=org,
            )
            for org in ORGS
        }
        for holder in self.holders.values():
            holder.register()
        self.aggregator_client = grant(self.consortium, "Org1MSP", "aggregator", "aggregator")
        self.trainers = [enrol(self.consortium, ORGS[i % 2], f"trainer{i}") for i in range(5)]
        self.rng = np.random.default_rng(3)
        self.direction = {k: self.rng.normal(size=s) for k, s in SHAPES.items()}

    def aggregator(self, holders, wait: float = 0.5) -> Aggregator:
        aggregator = Aggregator(self.aggregator_client, self.store, holders=holders, share_wait_seconds=wait)
        aggregator.publish_genesis({k: np.zeros(s, np.float32) for k, s in SHAPES.items()}, name="test-adapter")
        return aggregator

    def delta(self) -> dict[str, np.ndarray]:
        return {
            k: (0.01 * v + 0.004 * self.rng.normal(size=v.shape)).astype(np.float32) for k, v in self.direction.items()
        }

    def submit(self, number: int, trainer: FedLedgerClient) -> list[str]:
        record = trainer.round(number)
        commitments = seal_update(trainer, self.store, record, self.delta(), participant=trainer.whoami()["id"])
        trainer.submit_shared_update(number, commitments, samples=100, privacy=dp(1.0), train_loss=0.4)
        return commitments


@pytest.fixture
def world(tmp_path):
    built = World(tmp_path)
    yield built
    built.consortium.close()


def test_shares_sealed_to_the_wrong_organisation_or_altered_are_refused_and_the_update_rejected(world):
    aggregator = world.aggregator(list(world.holders.values()))
    swapped, tampered = world.trainers[1], world.trainers[2]

    def collect(number: int) -> None:
        for trainer in world.trainers:
            commitments = world.submit(number, trainer)
            if trainer is swapped:  # Org1's share sealed to Org2's key and the other way round, under the hashes
                one, two = (world.store.sealed_share(c) for c in commitments)
                world.store.put_sealed_share(commitments[0], two)
                world.store.put_sealed_share(commitments[1], one)
            if trainer is tampered:
                sealed = bytearray(world.store.sealed_share(commitments[0]))
                sealed[-5] ^= 1
                world.store.put_sealed_share(commitments[0], bytes(sealed))

    outcome = RoundDriver(aggregator, collect=collect).run_round()
    rejected = {u["participant"]: u["reason"] for u in outcome.rejected}
    swapped_id, tampered_id = swapped.whoami()["id"], tampered.whoami()["id"]
    assert set(rejected) == {swapped_id, tampered_id}
    assert "Org1MSP:" in rejected[swapped_id] and "sealed to 'Org2MSP'" in rejected[swapped_id]
    assert "Org1MSP:" in rejected[tampered_id] and "altered" in rejected[tampered_id]
    assert all(u.rule == "share-refused" for u in world.aggregator_client.updates(1) if u.status == "rejected")
    assert outcome.model is not None and len(outcome.model.updates) == 3
    # no update ever entered the store: sealed shares, the organisations' sums and the models only
    objects = {p.name for p in world.store.root.glob("*/*.obj")}
    assert objects >= {f"{outcome.model.hash}.obj"} and not list(world.store.root.glob("*/*.sealed"))
    sums = {p.sum_hash for p in world.aggregator_client.org_shares(1)}
    assert objects == {f"{h}.obj" for h in sums | {outcome.model.hash, outcome.base_model}}


def test_a_round_whose_organisation_is_down_waits_then_resumes_and_loses_nothing(world):
    org1_only = world.aggregator([world.holders["Org1MSP"]])

    def collect(number: int) -> None:
        for trainer in world.trainers:
            world.submit(number, trainer)

    driver = RoundDriver(org1_only, collect=collect)
    with pytest.raises(SharesPendingError, match="share sketches of Org2MSP"):
        driver.run_round()
    record = world.aggregator_client.round(1)
    assert record.status == "closed" and len(world.aggregator_client.updates(1)) == 5
    with pytest.raises(FailedPrecondition, match="waits for the share sketches of Org2MSP"):
        world.aggregator_client.finalize_round(1)
    # Org2 comes back; the aggregator, run again, resumes the round where the ledger says it is
    world.holders["Org2MSP"].sketch(1)
    outcome = RoundDriver(world.aggregator([world.holders["Org2MSP"]], wait=0.5), collect=lambda n: None)
    with pytest.raises(SharesPendingError, match="share sums of Org1MSP"):
        outcome.run_round()  # this aggregator runs only Org2's holder: Org1's sum is missing now
    world.holders["Org1MSP"].sum(1)
    resumed = RoundDriver(world.aggregator([], wait=0.5), collect=lambda n: None).run_round()
    assert resumed.started_at == "aggregate" and resumed.model is not None
    assert len(resumed.accepted) + len(resumed.rejected) == 5
    assert world.aggregator_client.round(1).status == "aggregated"
    assert shares.key_id(world.holders["Org1MSP"].key) in {k.key_id for k in world.aggregator_client.share_keys()}

"""A federated run over the embedded ledger with a tiny model: members and aggregator coordinate only
through the ledger and the encrypted store; the audit re-derives everything and catches tampering."""

from __future__ import annotations

import json
import shutil

import pytest

from fedledger.chaincode.embedded.bootstrap import create_consortium
from fedledger.chaincode.errors import RuleViolation
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.connection import LedgerLocation
from fedledger.sdk.store import UpdateStore, create_key

torch = pytest.importorskip("torch")

from fedledger.experiments.attacks import Attack, AttackConfig  # noqa: E402
from fedledger.experiments.federation import FederationConfig, run_federation  # noqa: E402
from fedledger.tensors import to_numpy  # noqa: E402
from fedledger.trainer.aggregator import Aggregator  # noqa: E402
from fedledger.trainer.audit import audit_run  # noqa: E402
from fedledger.trainer.data import load_breast_cancer_text, to_tensor_dataset  # noqa: E402
from fedledger.trainer.local_trainer import LocalTrainer, TrainConfig  # noqa: E402
from fedledger.trainer.member import Member  # noqa: E402
from fedledger.trainer.models import apply_lora, get_adapter_state, tiny_model  # noqa: E402
from fedledger.trainer.privacy import PrivacyConfig  # noqa: E402
from fedledger.trainer.provenance import ADAPTER_BYTES, PROVENANCE  # noqa: E402
from fedledger.trainer.strategy import make_strategy  # noqa: E402

ROUNDS = 2
TRAIN = TrainConfig(epochs=1, batch_size=16, learning_rate=5e-3, max_length=48)


class Run:
    def __init__(self, base):
        self.base = base
        self.consortium = create_consortium(base / "consortium")
        self.store = UpdateStore(base / "store", create_key(base / "store.key"))

    def client(self, mspid: str, name: str, admin: bool = False) -> FedLedgerClient:
        return LedgerLocation("embedded", self.consortium.base).client(mspid, name, admin=admin)

    def federate(self, config: FederationConfig, **options):
        """One run_federation of the tiny BERT over this run's ledger and store (a fresh aggregator and members)."""
        model, tokenizer = tiny_model("bert", seed=0)
        return run_federation(
            self.client,
            self.store,
            apply_lora(model, seed=0),
            tokenizer,
            load_breast_cancer_text(),
            out_dir=self.base,
            model_name="tiny-bert",
            config=config,
            train=TRAIN,
            progress=False,
            **options,
        )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = Run(tmp_path_factory.mktemp("federation"))
    config = FederationConfig(
        rounds=ROUNDS,
        members=5,
        attacks={4: AttackConfig(kind=Attack.SCALING, scale=-10.0)},
        rules={"detector_min_updates": 4},
    )
    return run, run.federate(config, privacy=PrivacyConfig(target_epsilon=8.0, rounds=ROUNDS))


def test_the_attacker_is_rejected_and_only_accepted_updates_build_each_model(finished):
    run, result = finished
    observer = run.client("Org2MSP", "observer")
    attacker = next(pid for pid, name in result.members.items() if name == "mallory")
    assert [o.number for o in result.outcomes] == list(range(1, ROUNDS + 1))
    for outcome in result.outcomes:
        assert [u["participant"] for u in outcome.rejected] == [attacker]
        assert len(outcome.accepted) == 4
        assert sorted(u["hash"] for u in outcome.model.updates) == sorted(u["hash"] for u in outcome.accepted)
        assert set(outcome.metrics) >= {"accuracy", "precision", "recall", "f1"}
        assert all(u["block"] is not None and u["epsilon"] > 0 for u in outcome.accepted)
    assert [m.version for m in observer.lineage(observer.latest_model().hash)] == [2, 1, 0]
    assert observer.balances()[attacker] == 0


def test_dp_epsilon_is_reported_and_within_the_ledger_budget(finished):
    run, result = finished
    observer = run.client("Org2MSP", "observer")
    rules = observer.rules()
    for pid in result.members:
        spent = observer.balance(pid).epsilon_spent
        assert 0 < spent <= rules.epsilon_total


def test_model_card_cites_the_ledger(finished):
    run, result = finished
    record = json.loads((result.card_dir / PROVENANCE).read_text())
    observer = run.client("Org2MSP", "observer")
    latest = observer.latest_model()
    assert record["final_adapter"]["hash"] == latest.hash
    assert record["rounds"][-1]["transactions"]["CommitAggregate"]["tx_id"] == latest.tx_id
    card = (result.card_dir / "README.md").read_text()
    assert latest.hash in card and "rejected" in card
    assert (result.card_dir / "adapter" / "adapter_config.json").exists()


def test_audit_passes_on_the_untouched_run(finished):
    run, result = finished
    report = audit_run(run.client("Org2MSP", "auditor2"), run.store, result.card_dir, make_strategy("fedavg"))
    assert report.ok, report
    assert report.checked["models recomputed"] == ROUNDS
    assert report.checked["updates"] == 5 * ROUNDS


@pytest.mark.parametrize("target", ["organisation sum", "sealed share", "adapter", "card"])
def test_audit_catches_tampering(finished, tmp_path, target):
    run, result = finished
    store_copy = tmp_path / "store"
    shutil.copytree(run.store.root, store_copy)
    card_copy = tmp_path / "model"
    shutil.copytree(result.card_dir, card_copy)
    store = UpdateStore(store_copy, (run.base / "store.key").read_bytes())
    observer = run.client("Org2MSP", "observer")
    if target == "organisation sum":  # the rounds are secret-shared: the model is replayed from these
        victim = observer.org_shares(1)[0].sum_hash
        path = next(p for p in (store._path(victim), store._path(victim, ".obj")) if p.exists())
        raw = bytearray(path.read_bytes())
        raw[-20] ^= 0xFF
        path.write_bytes(bytes(raw))
        expected = victim
    elif target == "sealed share":  # filed under another member's commitment
        first, second = observer.updates(1)[:2]
        store.put_sealed_share(first.share_commitments[0], store.sealed_share(second.share_commitments[0]))
        expected = first.share_commitments[0]
    elif target == "adapter":
        path = card_copy / ADAPTER_BYTES
        raw = bytearray(path.read_bytes())
        raw[-4] ^= 0x01
        path.write_bytes(bytes(raw))
        expected = ADAPTER_BYTES
    else:
        record = json.loads((card_copy / PROVENANCE).read_text())
        moved = record["rounds"][0]["rejected"].pop()
        record["rounds"][0]["accepted"].append(moved)
        (card_copy / PROVENANCE).write_text(json.dumps(record))
        expected = moved["hash"]
    report = audit_run(observer, store, card_copy, make_strategy("fedavg"))
    assert not report.ok
    assert report.mismatch is not None
    assert expected in report.mismatch


def test_a_restarted_member_does_not_submit_twice(tmp_path):
    run = Run(tmp_path)
    admin = run.client("Org1MSP", "Admin", True)
    admin.init_consortium({"member_msps": ["Org1MSP", "Org2MSP"]})
    model, tokenizer = tiny_model("bert", seed=1)
    model = apply_lora(model, seed=1)
    aggregator = Aggregator(run.client("Org1MSP", "aggregator"), run.store)
    aggregator.ensure_registered([admin, run.client("Org2MSP", "Admin", True)])
    aggregator.publish_genesis(to_numpy(get_adapter_state(model)), name="tiny")
    aggregator.open(1)
    data = to_tensor_dataset(load_breast_cancer_text().subset(range(64)), tokenizer, max_length=48)

    def member() -> Member:  # a fresh process: new objects, same identity and journal
        return Member(
            run.client("Org1MSP", "hospital-a"),
            run.store,
            LocalTrainer(model, train=TRAIN),
            data,
            journal=tmp_path / "journal.json",
        )

    first = member()
    first.ensure_registered(dataset_size=64, schema_hash="a" * 64, admin=admin)
    submitted = first.participate(1)
    again = member().participate(1)
    assert again.resumed and again.update.hash == submitted.update.hash
    assert len(aggregator.client.updates(1)) == 1
    assert json.loads((tmp_path / "journal.json").read_text())["1"]["committed"] is True


def test_the_aggregator_resumes_from_the_ledger(finished):
    run, _ = finished
    resumed = Aggregator(run.client("Org1MSP", "aggregator"), run.store)
    assert resumed.next_step() == ("open", ROUNDS + 1)


@pytest.mark.parametrize("keep_checkpoint", [True, False], ids=["checkpoint-kept", "checkpoint-lost"])
def test_a_restarted_aggregator_continues_with_the_strategy_state(tmp_path, keep_checkpoint):
    """FedAdam's moments are saved after every commit and restored by the next aggregator process, so its next
    aggregate is the one the endorsing peers recompute from the committed moments, and the audit (which replays
    the strategy from genesis) passes. An aggregator that lost its checkpoint steps from zero moments: the peers
    refuse that aggregate at CommitAggregate and nothing is committed."""
    run = Run(tmp_path)
    config = FederationConfig(rounds=1, members=3, strategy="fedadam")
    run.federate(config)  # then a restart: new aggregator, members and strategy objects, the same folder
    checkpoint = run.base / "aggregator" / "strategy.safetensors"
    assert checkpoint.is_file()
    observer = run.client("Org2MSP", "auditor")
    if not keep_checkpoint:
        for path in checkpoint.parent.iterdir():
            path.unlink()
        with pytest.raises(RuleViolation, match="not the aggregate of round 2's accepted updates"):
            run.federate(config)
        assert observer.round(2).status == "finalized" and observer.latest_model().version == 1
        return
    second = run.federate(config)
    assert [o.number for o in second.outcomes] == [2]
    assert observer.latest_model().optimizer_state is not None  # the moments are committed with the model
    report = audit_run(observer, run.store, second.card_dir, make_strategy("fedadam"))
    assert report.ok, str(report)

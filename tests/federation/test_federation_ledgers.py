"""The same tiny federated run on each ledger (embedded and the native Fabric network), then audited."""

from __future__ import annotations

import pytest

from fedledger.sdk.store import UpdateStore, create_key

pytest.importorskip("torch")

from fedledger.experiments.attacks import Attack, AttackConfig
from fedledger.experiments.federation import FederationConfig, run_federation
from fedledger.trainer.audit import audit_run
from fedledger.trainer.data import load_breast_cancer_text
from fedledger.trainer.local_trainer import TrainConfig
from fedledger.trainer.models import apply_lora, tiny_model
from fedledger.trainer.strategy import make_strategy


def test_a_tiny_federation_runs_and_audits_on_this_ledger(consortium, tmp_path):
    store = UpdateStore(tmp_path / "store", create_key(tmp_path / "store.key"))
    model, tokenizer = tiny_model("bert", seed=3)
    model = apply_lora(model, seed=3)
    result = run_federation(
        lambda mspid, name, admin: consortium.client(mspid, name, admin=admin),
        store,
        model,
        tokenizer,
        load_breast_cancer_text(),
        out_dir=tmp_path,
        model_name="tiny-bert",
        config=FederationConfig(
            rounds=2,
            members=5,
            attacks={4: AttackConfig(kind=Attack.SCALING, scale=-10.0)},
            rules={"detector_min_updates": 4},
        ),
        train=TrainConfig(epochs=1, batch_size=16, learning_rate=5e-3, max_length=48),
        progress=False,
    )
    attacker = next(pid for pid, name in result.members.items() if name == "mallory")
    observer = consortium.client("Org2MSP", "observer")
    for outcome in result.outcomes:
        assert attacker in [u["participant"] for u in outcome.rejected]
        assert attacker not in [u["participant"] for u in outcome.model.updates]
    assert [m.version for m in observer.lineage(observer.latest_model().hash)] == [2, 1, 0]
    report = audit_run(observer, store, result.card_dir, make_strategy("fedavg"))
    assert report.ok, report
    # secret-shared by default with two organisations: no update was ever in the store, only sealed shares
    assert all(r.share_holders for r in observer.rounds())
    assert report.checked["organisation sums verified"] == 4 and report.checked["sealed shares"] == 20
    assert report.checked["share sketches added up"] == 10

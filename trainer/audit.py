"""Audit of a finished run: re-verifies it against the ledger and the store, reports the first mismatch.

0. on the embedded ledger, the ledger itself: the blocks' hash chain and signatures, every transaction's
   creator and signature, and the world state and history table replayed from the blocks;
1. every update on the ledger opens from the store and hashes to its on-chain hash;
2. every committed model is recomputed by replaying the strategy from the genesis adapter over
   exactly the accepted updates of each round, and must hash to the committed model hash; a server
   optimiser state committed with it (FedAdam's moments) must be the replayed one and be in the store.
   The endorsing peers already recomputed each aggregate at CommitAggregate: this is the second check;
3. the model card agrees with the ledger (``trainer/card_audit.py``): its committed bytes and the peft
   adapter's tensors are the final model, its identity (base model, ``adapter_config.json``, input format) is
   the one anchored at genesis, its provenance (verdicts, scores, ε, metrics, tx ids) is the ledger's, and its
   READMEs are the ones rendered from that provenance.
"""

from __future__ import annotations

from pathlib import Path

from fedledger.chaincode.aggregation import encode_moments
from fedledger.chaincode.embedded.ledger import DB_NAME
from fedledger.chaincode.embedded.verify import verify_ledger
from fedledger.chaincode.records import ModelVersion
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.store import StoreError, UpdateStore
from fedledger.tensors import Manifest, NDState, TensorFormatError, decode, encode, sha256_hex
from fedledger.trainer.audit_report import AuditReport, Mismatch
from fedledger.trainer.card_audit import check_card
from fedledger.trainer.strategy import Strategy


def audit_run(
    client: FedLedgerClient,
    store: UpdateStore,
    card_dir: Path | str,
    strategy: Strategy,
    *,
    ledger_dir: Path | None = None,
) -> AuditReport:
    """``strategy`` must be a fresh instance configured like the aggregator's (it is replayed from genesis).
    ``ledger_dir``: the embedded ledger's folder, whose blocks, signatures, world state and history are
    re-verified first (a Fabric ledger's blocks were validated by its peers)."""
    report = AuditReport()
    try:
        if ledger_dir is not None:
            _check_ledger(ledger_dir, report)
        _check_updates(client, store, report)
        final = _check_models(client, store, strategy, report)
        check_card(client, Path(card_dir), final, report)
    except Mismatch as exc:
        report.mismatch = str(exc)
    return report


def _check_ledger(ledger_dir: Path, report: AuditReport) -> None:
    verified = verify_ledger(ledger_dir)
    if not verified.ok:
        raise Mismatch(f"the ledger ({ledger_dir.name}/{DB_NAME}) {verified}")
    report.count("blocks verified", verified.height)


def _open(store: UpdateStore, digest: str, what: str) -> bytes:
    try:
        return store.get(digest)
    except StoreError as exc:
        raise Mismatch(f"{what}: {exc}") from None


def _check_updates(client: FedLedgerClient, store: UpdateStore, report: AuditReport) -> None:
    for record in client.rounds():
        for update in client.updates(record.number):
            _open(store, update.hash, f"round {record.number} update of {update.participant}")
            report.count("updates")


def _decode(data: bytes, manifest: Manifest, what: str) -> NDState:
    try:
        return decode(data, expected=manifest, what=what)
    except TensorFormatError as exc:
        raise Mismatch(str(exc)) from None


def _check_models(client: FedLedgerClient, store: UpdateStore, strategy: Strategy, report: AuditReport) -> NDState:
    """Replays every committed model; returns the final one's state."""
    lineage = list(reversed(client.lineage(client.latest_model().hash)))
    genesis = lineage[0]
    state = _decode(_open(store, genesis.hash, "genesis adapter"), genesis.manifest, "genesis adapter")
    for model in lineage[1:]:
        if model.round is None:
            raise Mismatch(f"model v{model.version} has no round, but only the genesis model may lack one")
        accepted = sorted(u["hash"] for u in model.updates)
        on_ledger = sorted(u.hash for u in client.updates(model.round) if u.status == "accepted")
        if accepted != on_ledger and not client.round(model.round).revised_after_aggregate:
            raise Mismatch(f"model v{model.version} lists updates that are not round {model.round}'s accepted set")
        weights = {u["hash"]: u["weight"] for u in model.updates}
        results = [
            (_decode(_open(store, h, f"update {h}"), genesis.manifest, f"update {h}"), weights[h]) for h in accepted
        ]
        state = strategy.aggregate_fit(model.round, state, results)
        recomputed = sha256_hex(encode(state, like=genesis.manifest))
        if recomputed != model.hash:
            raise Mismatch(
                f"model v{model.version} (round {model.round}) recomputed from its accepted updates hashes to "
                f"{recomputed}, but the ledger committed {model.hash}"
            )
        _open(store, model.hash, f"model v{model.version}")
        if model.optimizer_state is not None:
            _check_optimizer_state(store, strategy, model, model.optimizer_state)
        report.count("models recomputed")
    return state


def _check_optimizer_state(store: UpdateStore, strategy: Strategy, model: ModelVersion, committed: str) -> None:
    moments = strategy.state_dict()
    if "m" not in moments or "v" not in moments:
        raise Mismatch(
            f"model v{model.version} carries a server optimiser state, but the audited strategy "
            f"{strategy.describe()} keeps none"
        )
    replayed = sha256_hex(encode_moments(moments["m"], moments["v"]))
    if replayed != committed:
        raise Mismatch(
            f"model v{model.version}'s optimiser state replays to {replayed}, but the ledger committed {committed}"
        )
    _open(store, committed, f"model v{model.version}'s optimiser state")

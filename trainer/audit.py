"""Audit of a finished run: re-verifies it against the ledger and the store, reports the first mismatch.

0. on the embedded ledger, the ledger itself: the blocks' hash chain and signatures, every transaction's
   creator and signature, and the world state and history table replayed from the blocks;
1. every update on the ledger opens from the store and hashes to its on-chain hash; in a secret-shared round,
   its hash is that of its share commitments, every sealed share is in the store, and the features the
   detector read are the sum of the holder organisations' share sketches;
2. every committed model is recomputed by replaying the strategy from the genesis adapter over
   exactly the accepted updates of each round, and must hash to the committed model hash; a server
   optimiser state committed with it (FedAdam's moments) must be the replayed one and be in the store. A
   secret-shared round is replayed from each holder organisation's share sum (in the store, hashing to the sum
   the ledger recorded, over exactly the accepted updates and weights), added and decoded: no update is opened.
   The endorsing peers already recomputed each aggregate at CommitAggregate: this is the second check;
3. the model card agrees with the ledger (``trainer/card_audit.py``): its committed bytes and the peft
   adapter's tensors are the final model, its identity (base model, ``adapter_config.json``, input format) is
   the one anchored at genesis, its provenance (verdicts, scores, ε, metrics, tx ids) is the ledger's, and its
   READMEs are the ones rendered from that provenance.
"""

from __future__ import annotations

from pathlib import Path

from fedledger import shares
from fedledger.chaincode.aggregation import encode_moments
from fedledger.chaincode.embedded.ledger import DB_NAME
from fedledger.chaincode.embedded.verify import verify_ledger
from fedledger.chaincode.records import ModelVersion, Round, Update
from fedledger.chaincode.share_protocol import (
    commitments_digest,
    decode_ring_sketch,
    mean_of_sums,
    sum_inputs_digest,
    summed_features,
)
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
        updates = client.updates(record.number)
        if record.shared:
            _check_shared_updates(client, store, record, updates, report)
            continue
        for update in updates:
            _open(store, update.hash, f"round {record.number} update of {update.participant}")
            report.count("updates")


def _check_shared_updates(
    client: FedLedgerClient, store: UpdateStore, record: Round, updates: list[Update], report: AuditReport
) -> None:
    parts = client.org_shares(record.number)
    judged = record.status in ("finalized", "aggregated")
    manifest = client.model(record.base_model).manifest if judged else {}
    sketch_dim = client.rules(record.rules_version).sketch_dim if judged else 0
    for update in updates:
        what = f"round {record.number} update of {update.participant}"
        if commitments_digest(update.share_commitments) != update.hash:
            raise Mismatch(f"{what}: its hash is not the digest of its {len(update.share_commitments)} commitments")
        for index, (holder, commitment) in enumerate(zip(record.share_holders, update.share_commitments, strict=True)):
            try:
                binding = shares.binding_of(store.sealed_share(commitment))
            except (StoreError, shares.SharesError) as exc:
                raise Mismatch(f"{what}: {exc}") from None
            expected = shares.Binding(holder["org"], record.number, update.participant, index, holder["key_id"])
            if binding != expected:
                raise Mismatch(
                    f"{what}: the sealed share filed under commitment {commitment} is bound to {binding}, not to "
                    f"{expected} (only {holder['org']}'s key can prove its ciphertext)"
                )
            report.count("sealed shares")
        report.count("updates")
        if judged and all(update.participant in p.sketches for p in parts):
            ring = [decode_ring_sketch(p.sketches[update.participant], sketch_dim) for p in parts]
            summed = summed_features(ring, scale=record.share_scale, manifest=manifest)
            if summed["sketch"] != update.features.get("sketch"):
                raise Mismatch(f"{what}: the sketch the detector read is not the sum of the organisations' sketches")
            report.count("share sketches added up")


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
        record = client.round(model.round)
        if record.shared:
            results = [(_shared_mean(client, store, record, model, report), 1)]
        else:
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


def _shared_mean(
    client: FedLedgerClient, store: UpdateStore, record: Round, model: ModelVersion, report: AuditReport
) -> NDState:
    """The weighted mean delta of a shared round from the organisations' sums, each checked against the ledger."""
    inputs = sum_inputs_digest([(u["hash"], u["weight"]) for u in model.updates])
    sums = []
    for part in client.org_shares(record.number):
        what = f"{part.org}'s share sum of round {record.number}"
        if part.sum_inputs != inputs:
            raise Mismatch(f"{what} is not over model v{model.version}'s updates and weights")
        try:
            sums.append(shares.Share.from_bytes(_open(store, part.sum_hash, what), model.manifest).values)
        except shares.SharesError as exc:
            raise Mismatch(f"{what}: {exc}") from None
        report.count("organisation sums verified")
    total = sum(int(u["weight"]) for u in model.updates)
    return mean_of_sums(sums, scale=record.share_scale, total_weight=total)


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

"""Audit of a finished run: re-verifies it against the ledger and the store, reports the first mismatch.

1. every update on the ledger opens from the store and hashes to its on-chain hash;
2. every committed model is recomputed by replaying the strategy from the genesis adapter over
   exactly the accepted updates of each round, and must hash to the committed model hash; a server
   optimiser state committed with it (FedAdam's moments) must be the replayed one and be in the store.
   The endorsing peers already recomputed each aggregate at CommitAggregate: this is the second check;
3. the model card's provenance agrees with the ledger (models, update hashes, verdicts, tx ids),
   and its adapter bytes are the final committed model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from fedledger.chaincode.aggregation import encode_moments
from fedledger.chaincode.records import ModelVersion
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.store import StoreError, UpdateStore
from fedledger.tensors import Manifest, NDState, TensorFormatError, decode, encode, sha256_hex
from fedledger.trainer.provenance import ADAPTER_BYTES, PROVENANCE
from fedledger.trainer.strategy import Strategy


@dataclass
class AuditReport:
    checked: dict[str, int] = field(default_factory=dict)
    mismatch: str | None = None

    @property
    def ok(self) -> bool:
        return self.mismatch is None

    def __str__(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in self.checked.items())
        return f"OK: {counts}" if self.ok else f"MISMATCH: {self.mismatch} (checked before it: {counts})"


class _Mismatch(Exception):
    pass


def _count(report: AuditReport, what: str) -> None:
    report.checked[what] = report.checked.get(what, 0) + 1


def audit_run(client: FedLedgerClient, store: UpdateStore, card_dir: Path | str, strategy: Strategy) -> AuditReport:
    """``strategy`` must be a fresh instance configured like the aggregator's (it is replayed from genesis)."""
    report = AuditReport()
    try:
        _check_updates(client, store, report)
        _check_models(client, store, strategy, report)
        _check_card(client, Path(card_dir), report)
    except _Mismatch as exc:
        report.mismatch = str(exc)
    return report


def _open(store: UpdateStore, digest: str, what: str) -> bytes:
    try:
        return store.get(digest)
    except StoreError as exc:
        raise _Mismatch(f"{what}: {exc}") from None


def _check_updates(client: FedLedgerClient, store: UpdateStore, report: AuditReport) -> None:
    for record in client.rounds():
        for update in client.updates(record.number):
            _open(store, update.hash, f"round {record.number} update of {update.participant}")
            _count(report, "updates")


def _decode(data: bytes, manifest: Manifest, what: str) -> NDState:
    try:
        return decode(data, expected=manifest, what=what)
    except TensorFormatError as exc:
        raise _Mismatch(str(exc)) from None


def _check_models(client: FedLedgerClient, store: UpdateStore, strategy: Strategy, report: AuditReport) -> None:
    lineage = list(reversed(client.lineage(client.latest_model().hash)))
    genesis = lineage[0]
    state = _decode(_open(store, genesis.hash, "genesis adapter"), genesis.manifest, "genesis adapter")
    for model in lineage[1:]:
        if model.round is None:
            raise _Mismatch(f"model v{model.version} has no round, but only the genesis model may lack one")
        accepted = sorted(u["hash"] for u in model.updates)
        on_ledger = sorted(u.hash for u in client.updates(model.round) if u.status == "accepted")
        if accepted != on_ledger and not client.round(model.round).revised_after_aggregate:
            raise _Mismatch(f"model v{model.version} lists updates that are not round {model.round}'s accepted set")
        weights = {u["hash"]: u["weight"] for u in model.updates}
        results = [
            (_decode(_open(store, h, f"update {h}"), genesis.manifest, f"update {h}"), weights[h]) for h in accepted
        ]
        state = strategy.aggregate_fit(model.round, state, results)
        recomputed = sha256_hex(encode(state, like=genesis.manifest))
        if recomputed != model.hash:
            raise _Mismatch(
                f"model v{model.version} (round {model.round}) recomputed from its accepted updates hashes to "
                f"{recomputed}, but the ledger committed {model.hash}"
            )
        _open(store, model.hash, f"model v{model.version}")
        if model.optimizer_state is not None:
            _check_optimizer_state(store, strategy, model, model.optimizer_state)
        _count(report, "models recomputed")


def _check_optimizer_state(store: UpdateStore, strategy: Strategy, model: ModelVersion, committed: str) -> None:
    moments = strategy.state_dict()
    if "m" not in moments or "v" not in moments:
        raise _Mismatch(
            f"model v{model.version} carries a server optimiser state, but the audited strategy "
            f"{strategy.describe()} keeps none"
        )
    replayed = sha256_hex(encode_moments(moments["m"], moments["v"]))
    if replayed != committed:
        raise _Mismatch(
            f"model v{model.version}'s optimiser state replays to {replayed}, but the ledger committed {committed}"
        )
    _open(store, committed, f"model v{model.version}'s optimiser state")


def _check_card(client: FedLedgerClient, card_dir: Path, report: AuditReport) -> None:
    try:
        record = json.loads((card_dir / PROVENANCE).read_text())
        adapter = (card_dir / ADAPTER_BYTES).read_bytes()
    except (OSError, ValueError) as exc:
        raise _Mismatch(f"model card in {card_dir} cannot be read: {exc}") from None
    latest = client.latest_model()
    if sha256_hex(adapter) != latest.hash:
        raise _Mismatch(f"{ADAPTER_BYTES} is not the final committed adapter {latest.hash}")
    if (record.get("final_adapter") or {}).get("hash") != latest.hash:
        raise _Mismatch("the card's final adapter is not the ledger's latest model")
    for entry in record["rounds"]:
        number = entry["number"]
        ledger_updates = {u.hash: u for u in client.updates(number)}
        for verdict in ("accepted", "rejected"):
            for u in entry[verdict]:
                on_chain = ledger_updates.get(u["hash"])
                if on_chain is None or on_chain.status != verdict or on_chain.tx_id != u["tx_id"]:
                    raise _Mismatch(
                        f"the card lists round {number} update {u['hash']} as {verdict}; the ledger disagrees"
                    )
                _count(report, "card entries")
        model = entry.get("model")
        if model is not None:
            on_chain_model = client.model(model["hash"])
            if on_chain_model.tx_id != model["tx_id"] or on_chain_model.round != number:
                raise _Mismatch(f"the card's model of round {number} does not match the ledger")

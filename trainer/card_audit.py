"""The model card against the ledger, the last step of ``fedledger audit`` (``trainer/audit.py``).

Every file a user loads is checked, and a difference is named by file and field: the committed bytes and the
peft adapter's tensors against the final model on the ledger; the card identity (base model, peft
``adapter_config.json``, input text format) against the hash the genesis model carries on the ledger;
``provenance.json``'s verdicts, scores, ε and metrics against the ledger's records; each README against the
card rendered from that provenance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.chaincode.records import Update
from fedledger.sdk.client import FedLedgerClient
from fedledger.tensors import NDState, sha256_hex
from fedledger.trainer.audit_report import AuditReport, Mismatch
from fedledger.trainer.provenance import (
    ADAPTER_BYTES,
    ADAPTER_DIR,
    IDENTITY_FIELDS,
    PROVENANCE,
    anchored_identity,
    card_readmes,
    identity_sha256,
    render_card,
)

PEFT_WEIGHTS = f"{ADAPTER_DIR}/adapter_model.safetensors"
PEFT_CONFIG = f"{ADAPTER_DIR}/adapter_config.json"
#: The fields of a card's update entry that are the ledger's record of that update.
UPDATE_FIELDS = ("participant", "samples", "epsilon", "score", "reason")


def check_card(client: FedLedgerClient, card_dir: Path, final: NDState, report: AuditReport) -> None:
    """``final``: the final committed model's state, as the audit replayed it."""
    record = _read_json(card_dir, PROVENANCE)
    try:
        adapter = (card_dir / ADAPTER_BYTES).read_bytes()
    except OSError as exc:
        raise Mismatch(f"{ADAPTER_BYTES} cannot be read: {exc}") from None
    latest = client.latest_model()
    if sha256_hex(adapter) != latest.hash:
        raise Mismatch(f"{ADAPTER_BYTES} is not the final committed adapter {latest.hash}")
    if (record.get("final_adapter") or {}).get("hash") != latest.hash:
        raise Mismatch(f"{PROVENANCE} field final_adapter.hash is not the ledger's latest model {latest.hash}")
    if (card_dir / ADAPTER_DIR).is_dir():
        _check_peft_weights(card_dir, final, latest.hash, report)
    anchored = anchored_identity(client.lineage(latest.hash)[-1].name)
    # The ledger, not the card, says whether the card must carry an identity: dropping the identity from
    # provenance.json must not switch its checks off. Only runs registered before the anchor have none.
    if anchored is not None and "adapter_config" not in record:
        raise Mismatch(f"{PROVENANCE} has no card identity, but the genesis model on the ledger anchors {anchored}")
    identified = "adapter_config" in record
    if identified:
        _check_identity(card_dir, record, anchored, report)
    _check_rounds(client, record, report)
    if identified:
        _check_readmes(card_dir, record, report)


def _read_json(card_dir: Path, name: str) -> dict[str, Any]:
    try:
        return json.loads((card_dir / name).read_text())
    except (OSError, ValueError) as exc:
        raise Mismatch(f"{name} in {card_dir} cannot be read: {exc}") from None


def _check_peft_weights(card_dir: Path, final: NDState, model_hash: str, report: AuditReport) -> None:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(card_dir / PEFT_WEIGHTS))
    except (OSError, SafetensorError) as exc:
        raise Mismatch(f"{PEFT_WEIGHTS} cannot be read as safetensors: {exc}") from None
    if sorted(tensors) != sorted(final):
        raise Mismatch(f"{PEFT_WEIGHTS} holds other tensors than the final committed adapter {model_hash}")
    for name in sorted(final):
        if tensors[name].shape != final[name].shape or not np.array_equal(tensors[name], final[name]):
            raise Mismatch(f"{PEFT_WEIGHTS} tensor {name} differs from the final committed adapter {model_hash}")
        report.count("adapter tensors")


def _check_identity(card_dir: Path, record: Mapping[str, Any], anchored: str | None, report: AuditReport) -> None:
    if anchored is not None and identity_sha256(record) != anchored:
        raise Mismatch(
            f"{PROVENANCE} fields {', '.join(IDENTITY_FIELDS)} hash to {identity_sha256(record)}, but the genesis "
            f"model on the ledger records {anchored}"
        )
    config = _read_json(card_dir, PEFT_CONFIG)
    recorded = record["adapter_config"]
    for name in sorted(set(config) | set(recorded)):
        if config.get(name) != recorded.get(name):
            raise Mismatch(
                f"{PEFT_CONFIG} field {name} is {json.dumps(config.get(name))}, but the model was trained with "
                f"{json.dumps(recorded.get(name))} ({PROVENANCE}, anchored on the ledger at genesis)"
            )
    report.count("card identity fields", len(IDENTITY_FIELDS))


def _check_rounds(client: FedLedgerClient, record: Mapping[str, Any], report: AuditReport) -> None:
    for entry in record["rounds"]:
        number = entry["number"]
        on_ledger = {u.hash: u for u in client.updates(number)}
        for verdict in ("accepted", "rejected"):
            for u in entry[verdict]:
                _check_update(number, verdict, u, on_ledger.get(u["hash"]))
                report.count("card entries")
        for participant, epsilon in entry.get("epsilon_spent", {}).items():
            spent = [u.epsilon for u in on_ledger.values() if u.participant == participant]
            if not spent or epsilon != spent[0]:
                raise Mismatch(
                    f"{PROVENANCE} round {number} field epsilon_spent.{participant} is {epsilon}, the ledger's is "
                    f"{spent[0] if spent else 'missing'}"
                )
        model = entry.get("model")
        if model is None:
            continue
        on_chain = client.model(model["hash"])
        if on_chain.tx_id != model["tx_id"] or on_chain.round != number:
            raise Mismatch(f"{PROVENANCE} round {number} field model does not match the ledger's model {model['hash']}")
        for name in sorted(set(entry["metrics"]) | set(on_chain.metrics)):
            if entry["metrics"].get(name) != on_chain.metrics.get(name):
                raise Mismatch(
                    f"{PROVENANCE} round {number} field metrics.{name} is {entry['metrics'].get(name)}, but the "
                    f"ledger committed {on_chain.metrics.get(name)} with model v{on_chain.version}"
                )


def _check_update(number: int, verdict: str, entry: Mapping[str, Any], update: Update | None) -> None:
    where = f"{PROVENANCE} round {number} update {entry['hash']}"
    if update is None or update.status != verdict or update.tx_id != entry["tx_id"]:
        raise Mismatch(f"{where} is listed as {verdict}; the ledger disagrees")
    for name in UPDATE_FIELDS:
        if entry.get(name) != getattr(update, name):
            raise Mismatch(f"{where} field {name} is {entry.get(name)!r}, the ledger's is {getattr(update, name)!r}")


def _check_readmes(card_dir: Path, record: Mapping[str, Any], report: AuditReport) -> None:
    expected = render_card(record).splitlines()
    for readme in card_readmes(card_dir):
        name = readme.relative_to(card_dir).as_posix()
        try:
            lines = readme.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise Mismatch(f"{name} cannot be read: {exc}") from None
        for number, (ours, theirs) in enumerate(zip(lines, expected, strict=False), start=1):
            if ours != theirs:
                raise Mismatch(f"{name} line {number} is not the card of {PROVENANCE}: {ours.strip()[:120]!r}")
        if len(lines) != len(expected):
            raise Mismatch(f"{name} has {len(lines)} lines, the card of {PROVENANCE} has {len(expected)}")
        report.count("card files")

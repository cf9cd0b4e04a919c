"""Member: one consortium member's federated process, coordinating only through the ledger and
the update store.

Each round it fetches the global adapter the ledger names as the round's base model, checks the
bytes against that hash, trains locally (LoRA, optionally DP-SGD), and submits the delta. A
journal makes a crashed member resume without submitting twice: before training, the ledger is
asked whether this member's update for the round is already there; an update that was stored but
whose transaction may not have committed is re-submitted with the very same bytes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedledger import shares
from fedledger.chaincode.errors import NotFound, PermissionDenied
from fedledger.chaincode.privacy_budget import DPParams
from fedledger.chaincode.records import Round, Update
from fedledger.chaincode.share_protocol import commitments_digest
from fedledger.chaincode.weights import WEIGHT_UNITS
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.store import StoreError, UpdateStore
from fedledger.tensors import NDState, decode, encode, to_numpy

if TYPE_CHECKING:  # torch is imported only by whoever builds the trainer
    from fedledger.trainer.local_trainer import LocalTrainer

logger = logging.getLogger(__name__)


class BaseModelMismatchError(RuntimeError):
    """The global adapter in the store does not match the hash the ledger records for it."""


class UnsealedStoreError(RuntimeError):
    """A plaintext round's update would be written to a store that has no key."""


class ShareKeyChangedError(RuntimeError):
    """A holder organisation's key on the ledger is not the one the round fixed when it opened."""


def seal_update(
    client: FedLedgerClient, store: UpdateStore, record: Round, delta: NDState, *, participant: str
) -> list[str]:
    """Splits ``delta`` into one share per holder organisation, seals each to that organisation's registered
    key, files the sealed shares in the store and returns their commitments in share-index order. Nothing of
    the update itself leaves this process."""
    registered = {k.org: k for k in client.share_keys()}
    recipients = {}
    for holder in record.share_holders:
        key = registered.get(holder["org"])
        if key is None or key.key_id != holder["key_id"]:
            raise ShareKeyChangedError(
                f"{holder['org']}'s share key is no longer {holder['key_id']} (the round's); the round cannot "
                "take shares for it: ask the aggregator to abandon the round and open the next one"
            )
        recipients[holder["org"]] = shares.load_public_key(key.public_key.encode())
    manifest = client.model(record.base_model).manifest
    sealed = shares.share_update(
        delta,
        recipients,
        round=record.number,
        participant=participant,
        manifest=manifest,
        scale=record.share_scale,
        total_weight=WEIGHT_UNITS,
    )
    for part in sealed:
        store.put_sealed_share(part.commitment, part.sealed)
    return [part.commitment for part in sorted(sealed, key=lambda p: p.index)]


@dataclass(frozen=True)
class Submission:
    update: Update
    resumed: bool  # True when the ledger already held this member's update (nothing re-trained)
    seconds: dict[str, float] = field(default_factory=dict)  # "train", "submit": this call's wall time per step


class Member:
    """A consortium member: ``participate(round)`` trains on the member's data and submits the delta.

    Subclasses may change what is submitted by overriding :meth:`outgoing_delta` (the experiments'
    malicious members do).
    """

    def __init__(
        self,
        client: FedLedgerClient,
        store: UpdateStore,
        trainer: LocalTrainer,
        data: Any,
        *,
        journal: Path | str | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.trainer = trainer
        self.data = data
        self.journal = Path(journal) if journal is not None else None
        self._id: str | None = None

    @property
    def id(self) -> str:
        if self._id is None:
            self._id = str(self.client.whoami()["id"])
        return self._id

    def ensure_registered(self, *, dataset_size: int, schema_hash: str, admin: FedLedgerClient | None = None) -> None:
        """Registers as a trainer unless the ledger already knows this identity.

        The organisation's admin must have enrolled it first (EnrolTrainer attests its dataset); otherwise the
        error says the exact command the admin runs, with this member's dataset size and schema hash.
        ``admin`` (simulations that play every party): this organisation's admin client, which enrols it first.
        """
        if self.client.whoami()["participant"] is not None:
            return
        if admin is not None:
            admin.enrol_trainer(self.id.partition(":")[2], dataset_size=dataset_size, schema_hash=schema_hash)
        try:
            self.client.register("trainer")
        except PermissionDenied as exc:
            if "not enrolled" not in str(exc):
                raise
            mspid, _, name = self.id.partition(":")
            raise PermissionDenied(
                f"{self.id} is not enrolled; the admin of {mspid} runs: fedledger submit EnrolTrainer '{name}' "
                f"{dataset_size} {schema_hash} --ledger-dir <ledger> --msp-dir <admin msp> --mspid {mspid}"
            ) from None

    def global_state(self, round_number: int) -> dict[str, Any]:
        """The round's base adapter, read from the store and verified against the ledger's hash."""
        base = self.client.model(self.client.round(round_number).base_model)
        try:
            data = self.store.get(base.hash)
        except Exception as exc:
            raise BaseModelMismatchError(
                f"the global adapter v{base.version} ({base.hash}) of round {round_number} cannot be read from the "
                f"store ({exc}); ask the aggregator to re-publish it, do not train on anything else"
            ) from exc
        return decode(data, expected=base.manifest)

    def _already_submitted(self, round_number: int) -> Update | None:
        try:
            return self.client.update(round_number, self.id)
        except NotFound:
            return None

    def _journal(self) -> dict[str, Any]:
        if self.journal is None or not self.journal.exists():
            return {}
        return json.loads(self.journal.read_text())

    def _remember(self, round_number: int, entry: dict[str, Any]) -> None:
        if self.journal is None:
            return
        state = self._journal()
        state[str(round_number)] = entry
        state["accountant_history"] = [list(h) for h in self.trainer.history]
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.journal.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        tmp.replace(self.journal)

    def restore(self) -> None:
        """Reloads the DP accountant history after a restart, so ε keeps accumulating correctly."""
        history = self._journal().get("accountant_history")
        if history:
            self.trainer.history = [tuple(h) for h in history]

    def participate(self, round_number: int) -> Submission:
        existing = self._already_submitted(round_number)
        if existing is not None:
            logger.info("%s: update for round %d already on the ledger (%s)", self.id, round_number, existing.hash)
            return Submission(existing, resumed=True)
        record = self.client.round(round_number)
        pending = self._journal().get(str(round_number))
        started = time.perf_counter()
        if pending is not None and self._stored(pending):
            meta = pending
            logger.info("%s: re-submitting the stored update of round %d after a restart", self.id, round_number)
        else:
            meta = self._train(round_number, record)
        trained = time.perf_counter()
        privacy = DPParams.parse(meta["privacy"]) if meta.get("privacy") else None
        if meta.get("commitments"):
            update = self.client.submit_shared_update(
                round_number,
                meta["commitments"],
                samples=meta["samples"],
                privacy=privacy,
                train_loss=meta["train_loss"],
            )
        else:
            update = self.client.submit_update(
                round_number,
                self.store.get(meta["hash"]),
                samples=meta["samples"],
                privacy=privacy,
                train_loss=meta["train_loss"],
            )
        submitted = time.perf_counter()
        self._remember(round_number, {**meta, "tx_id": update.tx_id, "committed": True})
        seconds = {"train": trained - started, "submit": submitted - trained}
        return Submission(update, resumed=pending is not None, seconds=seconds)

    def _stored(self, pending: dict[str, Any]) -> bool:
        """Whether what the journal says was trained is still in the store, to be re-submitted as it was."""
        if pending.get("commitments"):
            try:
                for commitment in pending["commitments"]:
                    self.store.sealed_share(commitment)
            except StoreError:
                return False
            return True
        return pending["hash"] in self.store

    def outgoing_delta(self, delta: NDState) -> NDState:
        """The delta this member submits: its trained delta, unchanged."""
        return delta

    def _train(self, round_number: int, record: Round) -> dict[str, Any]:
        result = self.trainer.train_round(self.global_state(round_number), self.data, round_id=round_number)
        delta = self.outgoing_delta(to_numpy(result.delta))
        commitments: list[str] = []
        if record.shared:
            commitments = self._seal(record, delta)
            digest = commitments_digest(commitments)
        else:
            if not self.store.sealed:
                raise UnsealedStoreError(
                    f"round {round_number} is a plaintext round and the store has no key: the update would lie in "
                    "the shared store in clear; open the store with the consortium's store key (--store-key), or "
                    "have two organisations register share keys so that rounds are secret-shared"
                )
            digest = self.store.put(encode(delta))
        # The contract composes ε itself from these parameters (RDP, as Opacus' accountant does): ε is never declared.
        privacy = (
            DPParams(
                noise_multiplier=float(result.noise_multiplier),
                sample_rate=float(result.sample_rate),
                steps=int(result.steps),
                delta=float(result.dp_delta),
                accountant=str(result.accountant),
            ).to_dict()
            if result.noise_multiplier is not None and result.sample_rate is not None and result.dp_delta is not None
            else None
        )
        meta = {
            "hash": digest,
            "commitments": commitments,
            "samples": result.num_samples,
            "privacy": privacy,
            "local_epsilon": result.round_epsilon,
            "train_loss": float(result.train_loss),
            "steps": result.steps,
        }
        self._remember(round_number, {**meta, "committed": False})
        return meta

    def _seal(self, record: Round, delta: NDState) -> list[str]:
        return seal_update(self.client, self.store, record, delta, participant=self.id)

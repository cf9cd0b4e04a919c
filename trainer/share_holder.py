"""ShareHolder: one organisation's part in secret-shared rounds, run by its admin with the organisation's key.

The organisation's X25519 private key opens only its own share of each member's update. Once a round is
closed, :meth:`ShareHolder.sketch` opens its shares and sends them to its own peers, which sketch them under
the round's seed (SubmitShareSketches); a share that does not open or does not match the member's commitment
is reported as refused, with the reason, and the member's update is rejected. Once the round is finalized,
:meth:`ShareHolder.sum` has its peers sum its shares of exactly the accepted updates (SubmitShareSum) and files
the sum in the store, where the aggregator reads every organisation's sum. The organisation never holds more
than its own shares; the sums reveal only the round's aggregate once all are added.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedledger import shares
from fedledger.chaincode.errors import AlreadyExists, NotFound
from fedledger.chaincode.records import OrgShares, Round, Update
from fedledger.sdk.client import FedLedgerClient
from fedledger.sdk.store import StoreError, UpdateStore

__all__ = ["ShareHolder", "load_or_create_share_key"]

logger = logging.getLogger(__name__)


def load_or_create_share_key(path: Path | str) -> X25519PrivateKey:
    """The organisation's share key from ``path`` (PEM), created there (mode 0600) when the file is absent."""
    path = Path(path)
    if path.exists():
        return shares.load_private_key(path.read_bytes())
    key = shares.generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(shares.private_key_pem(key))
    return key


class ShareHolder:
    """Organisation ``org``'s share work, as its admin ``client``, with its private ``key``."""

    def __init__(self, client: FedLedgerClient, store: UpdateStore, key: X25519PrivateKey, *, org: str) -> None:
        self.client = client
        self.store = store
        self.key = key
        self.org = org

    def register(self) -> None:
        """Registers this organisation's public key unless the ledger already holds it."""
        mine = shares.key_id(self.key)
        if any(k.org == self.org and k.key_id == mine for k in self.client.share_keys()):
            return
        self.client.register_share_key(shares.public_key_pem(self.key))

    def _part(self, number: int) -> OrgShares | None:
        return next((p for p in self.client.org_shares(number) if p.org == self.org), None)

    def _open(self, record: Round, part: OrgShares, update: Update, manifest: dict) -> bytes:
        commitment = update.share_commitments[part.index]
        sealed = self.store.sealed_share(commitment)
        _share, data = shares.open_share(
            sealed,
            self.key,
            org=self.org,
            round=record.number,
            participant=update.participant,
            manifest=manifest,
            index=part.index,
            commitment=commitment,
        )
        return data

    def sketch(self, number: int) -> OrgShares | None:
        """SubmitShareSketches for a closed round this organisation holds shares of (None: nothing to do)."""
        record = self.client.round(number)
        part = self._part(number)
        if record.status != "closed" or part is None or part.sketched_tx:
            return part
        manifest = self.client.model(record.base_model).manifest
        opened: dict[str, bytes] = {}
        refused: dict[str, str] = {}
        for update in self.client.updates(number):
            try:
                opened[update.participant] = self._open(record, part, update, manifest)
            except (shares.SharesError, StoreError) as exc:
                logger.warning(
                    "%s: the share of %s in round %d is refused: %s", self.org, update.participant, number, exc
                )
                refused[update.participant] = str(exc)
        previous = self._previous_sum(record)
        try:
            return self.client.submit_share_sketches(number, self.org, opened, previous=previous, refused=refused)
        except AlreadyExists:
            return self._part(number)

    def _previous_sum(self, record: Round) -> bytes | None:
        if record.number <= 1:
            return None
        try:
            previous = self.client.round(record.number - 1)
        except NotFound:
            return None
        if not previous.shared or previous.status != "aggregated":
            return None
        part = self._part(previous.number)
        return self.store.get(part.sum_hash) if part is not None and part.sum_hash else None

    def sum(self, number: int) -> OrgShares | None:
        """SubmitShareSum for a finalized round, then the sum into the store (None: not a holder)."""
        record = self.client.round(number)
        part = self._part(number)
        if record.status != "finalized" or part is None:
            return part
        manifest = self.client.model(record.base_model).manifest
        accepted = sorted((u for u in self.client.updates(number) if u.status == "accepted"), key=lambda u: u.hash)
        if not accepted:
            return part
        opened = {u.participant: self._open(record, part, u, manifest) for u in accepted}
        total = shares.sum_shares(
            (shares.Share.from_bytes(opened[u.participant], manifest) for u in accepted), [u.weight for u in accepted]
        )
        digest = self.store.put(total.to_bytes())
        try:
            done = self.client.submit_share_sum(number, self.org, opened)
        except AlreadyExists:
            done = self._part(number)
        if done is not None and done.sum_hash != digest:
            raise StoreError(
                f"{self.org}'s sum of round {number} hashes to {digest} here but {done.sum_hash} on the ledger; "
                "the shares in the store are not the committed ones"
            )
        return done

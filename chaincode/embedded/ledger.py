"""EmbeddedLedger: one channel's blocks and world state in SQLite, for running the contract
without a network.

What it keeps from Fabric: transactions signed by X.509/ECDSA identities of known MSPs, a
hash-chained block per committed transaction signed by an orderer identity, world state with
per-key history, chaincode events in blocks, duplicate transaction ids refused, and a failed
transaction writes nothing. What it does not do: endorsement by several organisations (one
process executes the contract) and MVCC (writers are serialised by SQLite's write lock, so
transactions never conflict).

State-based endorsement: a key's endorsers (``set_key_endorsers``) are kept in the
``key_endorsers`` table and recorded in the block like a write. With one in-process endorser,
"endorsed by a peer of O" is stood in for by "submitted by an identity of O": a transaction that
writes, deletes or re-sets the endorsers of a key whose committed endorsers do not include the
submitter's MSP ID is refused at commit with ``KeyEndorsementFailure`` and writes nothing. As in
Fabric, deleting a key drops its endorsers, a plain write keeps them, endorsers set on a key that
does not exist after the transaction are ignored, and GetHistoryForKey lists value writes only.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from fedledger.chaincode.context import Creator
from fedledger.chaincode.contract import FedLedgerContract
from fedledger.chaincode.embedded.context import EmbeddedContext, committed_endorsers
from fedledger.chaincode.embedded.proposal import SignedProposal, canonical, decode_args, transaction_id
from fedledger.chaincode.errors import KeyEndorsementFailure
from fedledger.identity import Identity, Signer, load_msp_identity, verify_signature
from fedledger.tensors import sha256_hex

logger = logging.getLogger(__name__)

DB_NAME = "ledger.sqlite"
#: The file naming the orderer's MSP folder, relative to the ledger folder (older ledgers hold an absolute path,
#: which `path / recorded` keeps as it is).
ORDERER_MSP = "orderer-msp"
GENESIS_PREV = "0" * 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, header BLOB NOT NULL, data BLOB NOT NULL,
                                   signature BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS state (key BLOB PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS history (key BLOB NOT NULL, block INTEGER NOT NULL, txnum INTEGER NOT NULL,
                                    tx_id TEXT NOT NULL, timestamp REAL NOT NULL, value BLOB, is_delete INTEGER);
CREATE INDEX IF NOT EXISTS history_by_key ON history(key, block, txnum);
CREATE TABLE IF NOT EXISTS txids (tx_id TEXT PRIMARY KEY, block INTEGER NOT NULL);
"""
# Added with state-based endorsement; created on open too, so that older ledgers still open.
_KEY_ENDORSERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS key_endorsers (key BLOB PRIMARY KEY, mspids TEXT NOT NULL, block INTEGER NOT NULL);
"""


class LedgerError(Exception):
    """The ledger refused a transaction before the contract ran (signature, identity, duplicate)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Committed:
    tx_id: str
    block_number: int
    result: bytes
    event: tuple[str, bytes] | None


@dataclass(frozen=True)
class HistoryRow:
    """One write as the history table keeps it: the key's value after transaction ``tx_id`` of ``block``."""

    key: bytes
    block: int
    txnum: int
    tx_id: str
    timestamp: float
    value: bytes | None
    is_delete: bool


@dataclass(frozen=True)
class BlockEvent:
    block_number: int
    tx_id: str
    chaincode: str
    name: str
    payload: bytes


def _blob(value: bytes | str) -> bytes:
    """A stored BLOB; a cell someone rewrote as TEXT (``data || ' '`` in the sqlite3 shell) is read as its UTF-8
    bytes, so that verification reports the tampering instead of failing on the type."""
    return value.encode() if isinstance(value, str) else bytes(value)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=60000")
    return db


class CreatorVerifier:
    """Checks that a certificate was issued by one of the channel's MSP CAs and is valid."""

    def __init__(self, organizations: dict[str, str]) -> None:
        self._cas = {mspid: x509.load_pem_x509_certificate(pem.encode()) for mspid, pem in organizations.items()}

    def check(self, mspid: str, cert_pem: bytes, at: float) -> None:
        ca = self._cas.get(mspid)
        if ca is None:
            raise LedgerError(f"MSP {mspid!r} is not a member of this channel", code="UNKNOWN_MSP")
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise LedgerError(
                f"certificate is not issued by the CA of {mspid}: {exc}", code="CREATOR_NOT_TRUSTED"
            ) from None
        if not cert.not_valid_before_utc.timestamp() <= at <= cert.not_valid_after_utc.timestamp():
            raise LedgerError(f"certificate of the creator is not valid at {at}", code="CREATOR_EXPIRED")

    def check_signed(self, header: bytes, signature: bytes, at: float) -> tuple[dict, Creator]:
        """The transaction id derivation, the creator's certificate (valid at ``at``, the ledger's time) and its
        signature over ``header``."""
        fields = json.loads(header)
        creator = Creator(fields["creator"]["mspid"], fields["creator"]["cert_pem"].encode())
        expected_id = transaction_id(bytes.fromhex(fields["nonce"]), creator.mspid, creator.cert_pem)
        if fields["tx_id"] != expected_id:
            raise LedgerError("transaction id does not match nonce and creator", code="BAD_TXID")
        self.check(creator.mspid, creator.cert_pem, at)
        if not verify_signature(Identity(creator.mspid, creator.cert_pem), header, signature):
            raise LedgerError("the proposal signature does not verify with the creator's certificate", code="BAD_SIG")
        return fields, creator


class EmbeddedLedger:
    """Open with :meth:`create` (new ledger) or :meth:`open` (existing); thread-safe."""

    def __init__(self, path: Path, orderer: tuple[Identity, Signer] | None) -> None:
        self.path = Path(path)
        # The ledger's own clock: it stamps every transaction, judges certificates, and bounds the skew of
        # proposals. Tests replace it to move past deadlines; clients cannot.
        self.clock: Callable[[], float] = time.time
        self._db = _connect(self.path / DB_NAME)
        self._db.executescript(_KEY_ENDORSERS_SCHEMA)
        self._lock = threading.Lock()
        self._orderer = orderer
        self.contract = FedLedgerContract()
        self.config = self._genesis_config()
        self._verifier = CreatorVerifier(self.config["organizations"])

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: Path | str,
        *,
        channel: str,
        organizations: dict[str, bytes],
        orderer_msp: Path | str,
        orderer_mspid: str = "OrdererMSP",
    ) -> EmbeddedLedger:
        """Writes the genesis block: the channel's MSP CAs and the orderer that signs blocks."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if (path / DB_NAME).exists():
            raise FileExistsError(f"a ledger already exists in {path}; open it instead or choose an empty folder")
        identity, signer = load_msp_identity(orderer_msp, orderer_mspid)
        # Relative to the ledger folder, so that a consortium folder still opens after it is moved or copied.
        (path / ORDERER_MSP).write_text(os.path.relpath(Path(orderer_msp).resolve(), path.resolve()))
        db = _connect(path / DB_NAME)
        db.executescript(_SCHEMA)
        config = {
            "channel": channel,
            "organizations": {mspid: pem.decode() for mspid, pem in sorted(organizations.items())},
            "orderer": {"mspid": orderer_mspid, "cert_pem": identity.cert_pem.decode()},
        }
        data = canonical({"config": config})
        header = canonical({"number": 0, "prev_hash": GENESIS_PREV, "data_hash": sha256_hex(data), "timestamp": 0})
        db.execute("INSERT INTO blocks VALUES (0, ?, ?, ?)", (header, data, signer(header)))
        db.close()
        return cls(path, (identity, signer))

    @classmethod
    def open(cls, path: Path | str, *, read_only: bool = False) -> EmbeddedLedger:
        path = Path(path)
        if not (path / DB_NAME).exists():
            raise FileNotFoundError(
                f"no embedded ledger in {path}; create one with "
                f"`fedledger ledger init {path.parent if path.name == 'ledger' else path}`"
            )
        orderer = None
        if not read_only:
            orderer_mspid = json.loads(cls._read_block_data(path, 0))["config"]["orderer"]["mspid"]
            orderer = load_msp_identity(path / (path / ORDERER_MSP).read_text().strip(), orderer_mspid)
        return cls(path, orderer)

    @staticmethod
    def _read_block_data(path: Path, number: int) -> bytes:
        with closing(sqlite3.connect(path / DB_NAME)) as db:
            row = db.execute("SELECT data FROM blocks WHERE number = ?", (number,)).fetchone()
        return bytes(row[0])

    def _genesis_config(self) -> dict:
        row = self._db.execute("SELECT data FROM blocks WHERE number = 0").fetchone()
        return json.loads(bytes(row[0]))["config"]

    def close(self) -> None:
        self._db.close()

    # -- transactions ----------------------------------------------------------------------
    def _check_proposal(self, proposal: SignedProposal, at: float) -> tuple[dict, Creator]:
        fields, creator = self._verifier.check_signed(proposal.header, proposal.signature, at)
        if fields["channel"] != self.config["channel"]:
            raise LedgerError(f"channel {fields['channel']!r} does not exist on this ledger", code="BAD_CHANNEL")
        hashes = {k: sha256_hex(v) for k, v in sorted(proposal.transient.items())}
        if hashes != fields["transient_sha256"]:
            raise LedgerError("transient data does not match the signed proposal", code="BAD_TRANSIENT")
        return fields, creator

    def _run(self, db: sqlite3.Connection, proposal: SignedProposal) -> tuple[EmbeddedContext, bytes]:
        now = self.clock()
        fields, creator = self._check_proposal(proposal, now)
        ctx = EmbeddedContext(
            db,
            creator=creator,
            tx_id=fields["tx_id"],
            timestamp=now,
            transient=proposal.transient,
            skew=float(fields["timestamp"]) - now,
        )
        result = self.contract.invoke(ctx, fields["function"], decode_args(fields))
        return ctx, result

    def evaluate(self, proposal: SignedProposal) -> bytes:
        """Runs a query against committed state; nothing is written."""
        with closing(_connect(self.path / DB_NAME)) as db:
            _ctx, result = self._run(db, proposal)
        return result

    def submit(self, proposal: SignedProposal) -> Committed:
        """Executes and commits in one block, or raises (ContractError / LedgerError) writing nothing."""
        if self._orderer is None:
            raise LedgerError("this ledger was opened read-only", code="READ_ONLY")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute("SELECT 1 FROM txids WHERE tx_id = ?", (proposal.tx_id,)).fetchone():
                    raise LedgerError(f"duplicate transaction id {proposal.tx_id}", code="DUPLICATE_TXID")
                ctx, result = self._run(self._db, proposal)
                self._check_key_endorsers(ctx)
                number = self._append_block(proposal, ctx, result)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Committed(proposal.tx_id, number, result, ctx.event)

    def _check_key_endorsers(self, ctx: EmbeddedContext) -> None:
        """Every key the transaction writes, deletes or re-sets the endorsers of must, if it has endorsers (as
        committed before this transaction), list the submitter's organisation; as Fabric's key-level validation."""
        mspid = ctx.get_creator().mspid
        for key in sorted(set(ctx.writes) | set(ctx.endorser_writes)):
            endorsers = committed_endorsers(self._db, key)
            if endorsers is not None and mspid not in endorsers:
                raise KeyEndorsementFailure(
                    f"key {key!r} may only be changed by {' or '.join(endorsers)}, not {mspid}: "
                    f"submit the transaction as an identity of {' or '.join(endorsers)}"
                )

    def _append_block(self, proposal: SignedProposal, ctx: EmbeddedContext, result: bytes) -> int:
        assert self._orderer is not None
        number, prev_header = self._db.execute(
            "SELECT number, header FROM blocks ORDER BY number DESC LIMIT 1"
        ).fetchone()
        number += 1
        tx = {
            "header": proposal.header.decode(),
            "signature": _b64(proposal.signature),
            "validation": "VALID",
            "chaincode": proposal.fields["chaincode"],
            "reads": sorted([k, v] for k, v in ctx.reads.items()),
            "writes": [[k, None if v is None else _b64(v)] for k, v in sorted(ctx.writes.items())],
            "event": None if ctx.event is None else {"name": ctx.event[0], "payload": _b64(ctx.event[1])},
            "result_sha256": sha256_hex(result),
        }
        if ctx.endorser_writes:  # absent otherwise, so that blocks without them keep their earlier form
            tx["endorsers"] = [[k, v] for k, v in sorted(ctx.endorser_writes.items())]
        data = canonical({"transactions": [tx]})
        header = canonical(
            {
                "number": number,
                "prev_hash": sha256_hex(bytes(prev_header)),
                "data_hash": sha256_hex(data),
                "timestamp": ctx.get_tx_timestamp(),
            }
        )
        self._db.execute("INSERT INTO blocks VALUES (?, ?, ?, ?)", (number, header, data, self._orderer[1](header)))
        self._db.execute("INSERT INTO txids VALUES (?, ?)", (proposal.tx_id, number))
        timestamp = ctx.get_tx_timestamp()
        for key, value in sorted(ctx.writes.items()):
            raw_key = key.encode()
            if value is None:
                self._db.execute("DELETE FROM state WHERE key = ?", (raw_key,))
                self._db.execute("DELETE FROM key_endorsers WHERE key = ?", (raw_key,))
            else:
                self._db.execute("INSERT OR REPLACE INTO state VALUES (?, ?, ?)", (raw_key, value, number))
            self._db.execute(
                "INSERT INTO history VALUES (?, ?, 0, ?, ?, ?, ?)",
                (raw_key, number, proposal.tx_id, timestamp, value, int(value is None)),
            )
        for key, mspids in sorted(ctx.endorser_writes.items()):
            raw_key = key.encode()
            if not self._db.execute("SELECT 1 FROM state WHERE key = ?", (raw_key,)).fetchone():
                continue  # the key does not exist after this transaction: ignored, as in Fabric
            if mspids:
                self._db.execute(
                    "INSERT OR REPLACE INTO key_endorsers VALUES (?, ?, ?)", (raw_key, json.dumps(mspids), number)
                )
            else:
                self._db.execute("DELETE FROM key_endorsers WHERE key = ?", (raw_key,))
        return number

    # -- reading blocks --------------------------------------------------------------------
    def height(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]

    def blocks(self, start: int = 0) -> Iterator[tuple[int, bytes, bytes, bytes]]:
        with closing(_connect(self.path / DB_NAME)) as db:
            cursor = db.execute(
                "SELECT number, header, data, signature FROM blocks WHERE number >= ? ORDER BY number", (start,)
            )
            for number, header, data, signature in cursor:
                yield number, _blob(header), _blob(data), _blob(signature)

    def events(
        self, *, start_block: int | None = None, poll_interval: float = 0.05, stop: threading.Event | None = None
    ) -> Iterator[BlockEvent]:
        """Chaincode events in commit order; follows new blocks (also from other processes) until ``stop``."""
        next_block = self.height() if start_block is None else max(start_block, 1)
        while stop is None or not stop.is_set():
            progressed = False
            for number, _header, data, _sig in self.blocks(next_block):
                progressed = True
                next_block = number + 1
                for tx in json.loads(data).get("transactions", []):
                    if tx["event"] is not None and tx["validation"] == "VALID":
                        yield BlockEvent(
                            number,
                            json.loads(tx["header"])["tx_id"],
                            tx["chaincode"],
                            tx["event"]["name"],
                            base64.b64decode(tx["event"]["payload"]),
                        )
            if not progressed:
                if stop is not None:
                    stop.wait(poll_interval)
                else:
                    time.sleep(poll_interval)

    def state_snapshot(self) -> dict[bytes, bytes]:
        return {_blob(k): _blob(v) for k, v in self._db.execute("SELECT key, value FROM state")}

    def key_endorsers_snapshot(self) -> dict[bytes, list[str]]:
        """Every key's endorsers (state-based endorsement), as committed."""
        return {_blob(k): json.loads(v) for k, v in self._db.execute("SELECT key, mspids FROM key_endorsers")}

    def history_rows(self) -> list[HistoryRow]:
        """The history table (what GetHistory reads) in block order."""
        rows = self._db.execute(
            "SELECT key, block, txnum, tx_id, timestamp, value, is_delete FROM history ORDER BY block, txnum, key"
        )
        return [
            HistoryRow(_blob(k), block, txnum, tx_id, ts, None if v is None else _blob(v), bool(d))
            for k, block, txnum, tx_id, ts, v, d in rows
        ]

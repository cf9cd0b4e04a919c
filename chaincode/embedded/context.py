"""EmbeddedContext: the ledger-context port over the embedded ledger's SQLite world state.

Keys are stored as UTF-8 BLOBs so that SQLite compares them bytewise, as Fabric's LevelDB does.

Reads come from committed state (recorded with their versions); writes are buffered in the
write set and only applied by the ledger if the whole transaction succeeds. Key endorsers
(state-based endorsement) are buffered the same way, in ``endorser_writes``, and read from the
committed ``key_endorsers`` table.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence

from fedledger.chaincode.context import Creator, HistoryEntry, normalize_endorsers
from fedledger.chaincode.keys import composite_key

_RANGE_END = "\U0010ffff"


class EmbeddedContext:
    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        creator: Creator,
        tx_id: str,
        timestamp: float,
        transient: Mapping[str, bytes],
        skew: float = 0.0,
    ) -> None:
        """``timestamp``: the ledger's own clock at execution; ``skew``: the proposal's timestamp minus it."""
        self._db = connection
        self._creator = creator
        self._tx_id = tx_id
        self._timestamp = timestamp
        self._skew = skew
        self._transient = dict(transient)
        self.reads: dict[str, int | None] = {}
        self.writes: dict[str, bytes | None] = {}
        self.event: tuple[str, bytes] | None = None
        self.endorser_writes: dict[str, list[str]] = {}

    def get_state(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value, version FROM state WHERE key = ?", (key.encode(),)).fetchone()
        self.reads[key] = row[1] if row else None
        return bytes(row[0]) if row else None

    def put_state(self, key: str, value: bytes) -> None:
        self.writes[key] = bytes(value)

    def del_state(self, key: str) -> None:
        self.writes[key] = None

    def get_state_by_partial_composite_key(
        self, object_type: str, attributes: list[str]
    ) -> Iterator[tuple[str, bytes]]:
        start = composite_key(object_type, attributes)
        rows = self._db.execute(
            "SELECT key, value, version FROM state WHERE key >= ? AND key < ? ORDER BY key",
            (start.encode(), (start + _RANGE_END).encode()),
        ).fetchall()
        for raw_key, value, version in rows:
            key = bytes(raw_key).decode()
            self.reads[key] = version
            yield key, bytes(value)

    def get_history_for_key(self, key: str) -> Iterator[HistoryEntry]:
        rows = self._db.execute(
            "SELECT tx_id, timestamp, value, is_delete FROM history WHERE key = ? ORDER BY block, txnum",
            (key.encode(),),
        ).fetchall()
        for tx_id, timestamp, value, is_delete in rows:
            yield HistoryEntry(tx_id, timestamp, bytes(value or b""), bool(is_delete))

    def get_creator(self) -> Creator:
        return self._creator

    def get_tx_id(self) -> str:
        return self._tx_id

    def get_tx_timestamp(self) -> float:
        return self._timestamp

    def clock_skew(self) -> float:
        return self._skew

    def get_transient(self) -> Mapping[str, bytes]:
        return self._transient

    def set_event(self, name: str, payload: bytes) -> None:
        self.event = (name, bytes(payload))

    def set_key_endorsers(self, key: str, mspids: Sequence[str]) -> None:
        self.endorser_writes[key] = normalize_endorsers(key, mspids)

    def get_key_endorsers(self, key: str) -> list[str] | None:
        return committed_endorsers(self._db, key)


def committed_endorsers(db: sqlite3.Connection, key: str) -> list[str] | None:
    """The key's endorsers as committed, None when it has none."""
    row = db.execute("SELECT mspids FROM key_endorsers WHERE key = ?", (key.encode(),)).fetchone()
    return json.loads(row[0]) if row else None

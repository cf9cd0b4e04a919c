"""Re-checks an embedded ledger from its genesis block: `fedledger ledger verify`.

For every block: the data hash, the link to the previous header, the orderer's signature; for
every transaction: the transaction id derivation, the creator's certificate against the channel's
MSP CAs, and the creator's signature. Finally the world state, the keys' endorsers (state-based endorsement)
and the history table (what GetHistory answers) are rebuilt from the blocks' write sets and compared with the
stored ones. Reports the first block that fails, or the first key whose state, endorsers or history differs.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from fedledger.chaincode.embedded.ledger import (
    GENESIS_PREV,
    CreatorVerifier,
    EmbeddedLedger,
    HistoryRow,
    LedgerError,
    sha256_hex,
)
from fedledger.identity import Identity, verify_signature


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    height: int
    transactions: int
    first_bad_block: int | None = None
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.height} blocks, {self.transactions} transactions, state and history match the blocks"
        return f"TAMPERED at block {self.first_bad_block}: {self.problem}"


class _BlockProblem(Exception):
    pass


def _check_transaction(tx: dict, verifier: CreatorVerifier, at: float) -> None:
    """``at``: the ledger's time stamped on the block, when the creator's certificate had to be valid."""
    try:
        verifier.check_signed(tx["header"].encode(), base64.b64decode(tx["signature"]), at)
    except LedgerError as exc:
        raise _BlockProblem(f"transaction {json.loads(tx['header'])['tx_id']}: {exc}") from None


def _apply_endorsers(changes: list[list], state: dict[bytes, bytes], endorsers: dict[bytes, list[str]]) -> None:
    """A transaction's endorser changes, after its writes: ignored for a key that does not exist, cleared by []."""
    for key, mspids in changes:
        if key.encode() not in state:
            continue
        if mspids:
            endorsers[key.encode()] = list(mspids)
        else:
            endorsers.pop(key.encode(), None)


def _order(row: HistoryRow) -> tuple[int, int, bytes]:
    return row.block, row.txnum, row.key


def verify_ledger(path: Path | str) -> VerifyReport:
    ledger = EmbeddedLedger.open(path, read_only=True)
    try:
        orderer = Identity(ledger.config["orderer"]["mspid"], ledger.config["orderer"]["cert_pem"].encode())
        verifier = CreatorVerifier(ledger.config["organizations"])
        state: dict[bytes, bytes] = {}
        endorsers: dict[bytes, list[str]] = {}
        history: list[HistoryRow] = []
        prev_hash = GENESIS_PREV
        count = height = 0
        for number, header, data, signature in ledger.blocks(0):
            height += 1
            try:
                if number != height - 1:
                    raise _BlockProblem(f"expected block {height - 1}, found {number}")
                fields = json.loads(header)
                if fields["number"] != number:
                    raise _BlockProblem("header number differs from the stored block number")
                if fields["prev_hash"] != prev_hash:
                    raise _BlockProblem("previous-hash link is broken")
                if fields["data_hash"] != sha256_hex(data):
                    raise _BlockProblem("block data does not match the data hash in its header")
                if not verify_signature(orderer, header, signature):
                    raise _BlockProblem("orderer signature does not verify")
                for txnum, tx in enumerate(json.loads(data).get("transactions", [])):
                    _check_transaction(tx, verifier, fields["timestamp"])
                    count += 1
                    tx_id = json.loads(tx["header"])["tx_id"]
                    for key, value in tx["writes"]:
                        raw = None if value is None else base64.b64decode(value)
                        if raw is None:
                            state.pop(key.encode(), None)
                            endorsers.pop(key.encode(), None)
                        else:
                            state[key.encode()] = raw
                        history.append(
                            HistoryRow(key.encode(), number, txnum, tx_id, fields["timestamp"], raw, raw is None)
                        )
                    _apply_endorsers(tx.get("endorsers", []), state, endorsers)
            except (_BlockProblem, ValueError, KeyError) as exc:
                return VerifyReport(False, height, count, number, str(exc))
            prev_hash = sha256_hex(header)
        stored = ledger.state_snapshot()
        if stored != state:
            differing = set(stored) ^ set(state) | {k for k in stored.keys() & state.keys() if stored[k] != state[k]}
            first = sorted(differing)[0]
            return VerifyReport(False, height, count, None, f"world state differs from the blocks at key {first!r}")
        stored_endorsers = ledger.key_endorsers_snapshot()
        if stored_endorsers != endorsers:
            differing = set(stored_endorsers) ^ set(endorsers) | {
                k for k in stored_endorsers.keys() & endorsers.keys() if stored_endorsers[k] != endorsers[k]
            }
            first = sorted(differing)[0]
            return VerifyReport(False, height, count, None, f"key endorsers differ from the blocks at key {first!r}")
        stored_history = sorted(ledger.history_rows(), key=_order)
        if stored_history != sorted(history, key=_order):
            first_row = next(
                (a or b for a, b in zip_longest(stored_history, sorted(history, key=_order)) if a != b), None
            )
            assert first_row is not None
            return VerifyReport(
                False,
                height,
                count,
                first_row.block,
                f"history differs from the blocks at key {first_row.key!r} (block {first_row.block})",
            )
        return VerifyReport(True, height, count)
    finally:
        ledger.close()

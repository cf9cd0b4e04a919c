"""A small contract that exercises every LedgerContext call, served as chaincode
``fedledger_compat`` next to ``fedledger`` by the network tests (never in production).

Loaded by file path in the chaincode server, so it imports only installed packages.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedledger.chaincode.context import LedgerContext
from fedledger.chaincode.encoding import decode_arguments
from fedledger.chaincode.errors import InvalidArgument, NotFound
from fedledger.chaincode.keys import composite_key


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class CompatTestContract:
    """Dispatches ``function`` to a ``_tx_<function>`` method."""

    def __init__(self) -> None:
        self._active = 0
        self._peak = 0
        self._lock = threading.Lock()

    def invoke(self, ctx: LedgerContext, function: str, args: Sequence[bytes | str]) -> bytes:
        method = getattr(self, f"_tx_{function}", None)
        if method is None:
            raise NotFound(f"transaction {function!r} does not exist")
        return method(ctx, *decode_arguments(args))

    # --- state -----------------------------------------------------------------------------

    def _tx_Put(self, ctx: LedgerContext, key: str, value: str) -> bytes:
        ctx.put_state(key, value.encode())
        return b"ok"

    def _tx_Get(self, ctx: LedgerContext, key: str) -> bytes:
        value = ctx.get_state(key)
        if value is None:
            raise NotFound(f"{key} does not exist")
        return value

    def _tx_ReadOwnWrite(self, ctx: LedgerContext, key: str) -> bytes:
        ctx.put_state(key, b"written in this tx")
        value = ctx.get_state(key)
        return _dumps({"read": None if value is None else value.decode()})

    def _tx_Delete(self, ctx: LedgerContext, key: str) -> bytes:
        ctx.del_state(key)
        return b"ok"

    def _tx_PutComposite(self, ctx: LedgerContext, object_type: str, *attrs_and_value: str) -> bytes:
        *attrs, value = attrs_and_value
        ctx.put_state(composite_key(object_type, attrs), value.encode())
        return b"ok"

    def _tx_Range(self, ctx: LedgerContext, object_type: str, *attrs: str) -> bytes:
        rows = ctx.get_state_by_partial_composite_key(object_type, list(attrs))
        return _dumps([[key, value.decode()] for key, value in rows])

    def _tx_History(self, ctx: LedgerContext, key: str) -> bytes:
        return _dumps(
            [
                {"tx_id": h.tx_id, "timestamp": h.timestamp, "value": h.value.decode(), "delete": h.is_delete}
                for h in ctx.get_history_for_key(key)
            ]
        )

    # --- state-based endorsement -----------------------------------------------------------

    def _tx_PutWithEndorsers(self, ctx: LedgerContext, key: str, value: str, *mspids: str) -> bytes:
        """Writes ``key`` and makes ``mspids`` its only endorsers (none: clears them)."""
        ctx.put_state(key, value.encode())
        ctx.set_key_endorsers(key, list(mspids))
        return b"ok"

    def _tx_SetEndorsers(self, ctx: LedgerContext, key: str, *mspids: str) -> bytes:
        ctx.set_key_endorsers(key, list(mspids))
        return b"ok"

    def _tx_KeyEndorsers(self, ctx: LedgerContext, key: str) -> bytes:
        return _dumps({"endorsers": ctx.get_key_endorsers(key)})

    # --- transaction metadata ---------------------------------------------------------------

    def _tx_Meta(self, ctx: LedgerContext) -> bytes:
        creator = ctx.get_creator()
        return _dumps(
            {
                "mspid": creator.mspid,
                "cert": creator.cert_pem.decode(),
                "tx_id": ctx.get_tx_id(),
                "timestamp": ctx.get_tx_timestamp(),
            }
        )

    def _tx_Emit(self, ctx: LedgerContext, name: str, payload: str, *replaced_by: str) -> bytes:
        ctx.set_event(name, payload.encode())
        if replaced_by:  # a second set_event replaces the first, as in Fabric
            ctx.set_event(replaced_by[0], replaced_by[1].encode())
        ctx.put_state(f"emitted/{ctx.get_tx_id()}", name.encode())
        return b"emitted"

    def _tx_Transient(self, ctx: LedgerContext, *record: str) -> bytes:
        digest = {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in sorted(ctx.get_transient().items())
        }
        if record:
            ctx.put_state(f"transient/{record[0]}", _dumps(digest))
        return _dumps(digest)

    def _tx_Fail(self, ctx: LedgerContext, message: str) -> bytes:
        ctx.put_state("never-written", b"x")
        raise InvalidArgument(message)

    def _tx_PeerErrorRaised(self, ctx: LedgerContext, key: str) -> bytes:
        """Asks the peer for a key of a collection that does not exist: the peer answers ERROR."""
        from fedledger.chaincode.fabric.compat import PeerError

        handler, channel, tx_id = ctx._handler, ctx._channel, ctx._tx_id  # type: ignore[attr-defined]
        try:
            value = ctx._run(handler.handle_get_state("no_such_collection", key, channel, tx_id))  # type: ignore[attr-defined]
        except PeerError as err:
            return _dumps({"raised": type(err).__name__, "message": str(err)})
        return _dumps({"raised": None, "value": repr(value)})

    def _tx_Crash(self, ctx: LedgerContext) -> bytes:
        raise RuntimeError("unexpected bug")

    def _tx_Slow(self, ctx: LedgerContext, key: str, millis: str) -> bytes:
        with self._lock:
            self._active += 1
            self._peak = max(self._peak, self._active)
        try:
            previous = ctx.get_state(key)
            time.sleep(int(millis) / 1000)
            ctx.put_state(key, b"done")
            return _dumps({"previous": None if previous is None else previous.decode()})
        finally:
            with self._lock:
                self._active -= 1

    def _tx_PeakConcurrency(self, ctx: LedgerContext) -> bytes:
        return str(self._peak).encode()

    # --- a SubmitUpdate look-alike -------------------------------------------------------------

    def _tx_SubmitUpdateLike(self, ctx: LedgerContext, round_id: str) -> bytes:
        """Hashes the transient update bytes, computes features with numpy, records commitment and
        features under (round, submitter), emits an event. Must be identical on every endorser."""
        data = ctx.get_transient().get("update")
        if data is None:
            raise InvalidArgument("transient field 'update' is required")
        weights = np.frombuffer(data, dtype=np.float32).astype(np.float64)
        features = {
            "l2": round(float(np.linalg.norm(weights)), 9),
            "mean": round(float(weights.mean()), 9),
            "std": round(float(weights.std()), 9),
            "q95": round(float(np.quantile(np.abs(weights), 0.95)), 9),
        }
        creator = ctx.get_creator()
        record = {
            "round": round_id,
            "mspid": creator.mspid,
            "sha256": hashlib.sha256(data).hexdigest(),
            "features": features,
            "submitted_at": ctx.get_tx_timestamp(),
        }
        ctx.put_state(composite_key("update", [round_id, creator.mspid, ctx.get_tx_id()]), _dumps(record))
        ctx.set_event("UpdateSubmitted", _dumps({"round": round_id, "sha256": record["sha256"]}))
        return _dumps(record)

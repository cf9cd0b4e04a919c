"""Fixes for the confirmed defects of fabric-chaincode-python 2.5.4, in one place.

Import the library only through this module. Each fix has a regression test against a real
peer in ``tests/fabric_network/test_compat.py``.

1. Importing ``fabric_shim`` runs ``logging.basicConfig(level=DEBUG)`` on the root logger:
   :func:`load_shim` imports it with the root logger's level and handlers saved and restored,
   and quiets the library's own (very chatty, eagerly formatted) logger.
2. ``set_event`` keeps the event on the stub, but the handler never puts it into the COMPLETED
   message, so the peer's chaincode-event stream stays empty: :class:`CompatHandler` sends the
   last event set (Fabric keeps one per transaction) in ``ChaincodeMessage.chaincode_event``.
3. Every message from the peer is handled in its own task, and all of them write to the one
   gRPC stream at once; grpc.aio allows one pending write per call, so concurrent transactions
   abort with GRPC_CALL_ERROR_TOO_MANY_OPERATIONS: :class:`SerializedStream` serialises writes.
4. ``get_transient`` (and the private-data calls) are interface stubs returning None:
   :func:`transient_map` reads the transient map from the signed proposal the peer forwards.
5. An ERROR reply from the peer to a ledger call (e.g. a failed GetState) resolves the request
   future like a success, so the peer's error text came back as data: ledger calls now raise
   :class:`PeerError`.
6. The handler logs each incoming proposal with an eagerly formatted f-string; with a 50 MB
   transient payload that is seconds of CPU per message. :meth:`CompatHandler.chat_with_peer`
   replaces that loop.
7. ``set_state_validation_parameter`` and ``get_state_validation_parameter`` (state-based
   endorsement) are interface stubs that take no key, send nothing and return None, and the
   handler has no PUT_STATE_METADATA / GET_STATE_METADATA call: :meth:`CompatHandler.handle_put_state_metadata`
   and :meth:`CompatHandler.handle_get_state_metadata` send them like the other ledger calls (an
   ERROR reply raises :class:`PeerError`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import logging
from collections.abc import AsyncIterable, Awaitable, Callable
from types import ModuleType
from typing import Any

from fabric_protos.peer import chaincode_event_pb2, chaincode_pb2, proposal_pb2, proposal_response_pb2
from fabric_protos.peer import chaincode_shim_pb2 as shim_pb2

LOG = logging.getLogger(__name__)
LIBRARY_LOGGER = "asyncio"  # fabric-chaincode-python logs through logging.getLogger("asyncio")


def load_shim() -> dict[str, ModuleType]:
    """Imports the fabric_shim modules without letting them reconfigure the root logger (fix 1)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    library = logging.getLogger(LIBRARY_LOGGER)
    library_level = library.level
    try:
        modules = {
            name: importlib.import_module(f"fabric_chaincode_python.fabric_shim.{name}")
            for name in ("logging", "handler", "stub", "msg_queue_handler")
        }
    finally:
        root.setLevel(level)
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
    # The library logs every message at INFO; asyncio's own warnings still get through.
    library.setLevel(max(library_level, logging.WARNING))
    return modules


_SHIM = load_shim()
Handler = _SHIM["handler"].Handler
ChaincodeStub = _SHIM["stub"].ChaincodeStub
MsgQueueHandler = _SHIM["msg_queue_handler"].MsgQueueHandler
QueueMessage = _SHIM["msg_queue_handler"].QueueMessage

RESPONSE_OK = 200
VALIDATION_PARAMETER = "VALIDATION_PARAMETER"  # the metakey of a key's endorsement policy (state-based endorsement)
RESPONSE_ERROR = 500


class PeerError(RuntimeError):
    """The peer answered a ledger call with an ERROR message (fix 5)."""


class SerializedStream:
    """Wraps a grpc.aio stream context so that only one write is in flight at a time (fix 3)."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._lock = asyncio.Lock()

    async def write(self, message: shim_pb2.ChaincodeMessage) -> None:
        async with self._lock:
            await self._context.write(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def transient_map(stub: Any) -> dict[str, bytes]:
    """The transaction's transient data, from the proposal payload (fix 4)."""
    proposal = getattr(stub, "proposal", None)
    if proposal is None or not proposal.payload:
        return {}
    payload = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
    return dict(payload.TransientMap)


class Invocation:
    """What a dispatcher returns for one transaction: a Fabric Response and an optional event."""

    __slots__ = ("event", "message", "payload", "status")

    def __init__(
        self,
        *,
        status: int,
        payload: bytes = b"",
        message: str = "",
        event: tuple[str, bytes] | None = None,
    ) -> None:
        self.status = status
        self.payload = payload
        self.message = message
        self.event = event


# dispatcher(stub, function, raw argument bytes) -> Invocation; runs on the event loop, may off-load work.
Dispatcher = Callable[[Any, str, list[bytes]], Awaitable[Invocation]]


class CompatHandler(Handler):
    """The library's stream handler with fixes 2, 3, 5, 6 and 7 applied."""

    def __init__(self, cc_id: str, dispatcher: Dispatcher) -> None:
        super().__init__(cc_id, None)
        self._dispatch = dispatcher

    async def chat_with_peer(self, stream: AsyncIterable[shim_pb2.ChaincodeMessage], context: Any) -> None:
        self.state = _SHIM["handler"].STATES.CREATED
        self.context = SerializedStream(context)
        self.msg_queue_handler = MsgQueueHandler(self)
        register = shim_pb2.ChaincodeMessage(
            type=shim_pb2.ChaincodeMessage.REGISTER, payload=self.chaincode_id.SerializeToString()
        )
        register.timestamp.FromDatetime(dt.datetime.now(dt.UTC).replace(tzinfo=None))
        await self.context.write(register)
        async for message in stream:
            if message is None:
                LOG.error("received nil message, ending chaincode stream")
                break
            self._track_task(self.handle_message(message))
        if self._pending_tasks:
            await asyncio.gather(*self._pending_tasks, return_exceptions=True)

    async def handle_message(self, msg: shim_pb2.ChaincodeMessage) -> None:
        if msg.type == shim_pb2.ChaincodeMessage.KEEPALIVE:
            return
        if self.state == _SHIM["handler"].STATES.READY:
            await self.handle_message_ready(msg)
        elif self.state == _SHIM["handler"].STATES.ESTABLISHED:
            await self.handle_message_established(msg)
        else:
            await self.handle_message_created(msg)

    async def handle_stub_interaction(self, msg: shim_pb2.ChaincodeMessage, action: str = "Invoke") -> None:
        stub = None
        try:
            cc_input = chaincode_pb2.ChaincodeInput.FromString(msg.payload)
            stub = ChaincodeStub(self, msg.channel_id, msg.txid, cc_input, msg.proposal)
            if not cc_input.args:
                raise ValueError("no function name in the transaction payload")
            # The shim's get_function_and_parameters() decodes every argument and raises a raw
            # UnicodeDecodeError on invalid UTF-8; the contract decodes them itself, with a typed error.
            function = bytes(cc_input.args[0]).decode("utf-8", "replace")
            result = await self._dispatch(stub, function, [bytes(a) for a in cc_input.args[1:]])
        except Exception as exc:  # a malformed proposal must still get an answer
            LOG.exception("tx %s: %s failed before reaching the contract", msg.txid, action)
            result = Invocation(status=RESPONSE_ERROR, message=f"[INTERNAL] {type(exc).__name__}: {exc}")
        response = proposal_response_pb2.Response(status=result.status, payload=result.payload, message=result.message)
        completed = shim_pb2.ChaincodeMessage(
            type=shim_pb2.ChaincodeMessage.COMPLETED,
            payload=response.SerializeToString(),
            txid=msg.txid,
            channel_id=msg.channel_id,
        )
        event = result.event if result.event is not None else (event_of(stub) if stub else None)
        if event is not None and result.status < 400:
            name, payload = event
            completed.chaincode_event.CopyFrom(chaincode_event_pb2.ChaincodeEvent(event_name=name, payload=payload))
        await self.context.write(completed)

    async def handle_put_state_metadata(
        self, collection: str, key: str, metakey: str, value: bytes, channel_id: str, tx_id: str
    ) -> None:
        """Sets one metadata entry of ``key`` (``VALIDATION_PARAMETER``: its endorsement policy) (fix 7)."""
        request = shim_pb2.PutStateMetadata(
            key=key, collection=collection, metadata=shim_pb2.StateMetadata(metakey=metakey, value=value)
        )
        msg = shim_pb2.ChaincodeMessage(
            type=shim_pb2.ChaincodeMessage.PUT_STATE_METADATA,
            payload=request.SerializeToString(),
            txid=tx_id,
            channel_id=channel_id,
        )
        await self._Handler__ask_peer_and_listen(msg, "PutStateMetadata")

    async def handle_get_state_metadata(
        self, collection: str, key: str, channel_id: str, tx_id: str
    ) -> dict[str, bytes]:
        """The committed metadata entries of ``key``, by metakey (fix 7)."""
        request = shim_pb2.GetStateMetadata(key=key, collection=collection)
        msg = shim_pb2.ChaincodeMessage(
            type=shim_pb2.ChaincodeMessage.GET_STATE_METADATA,
            payload=request.SerializeToString(),
            txid=tx_id,
            channel_id=channel_id,
        )
        reply = await self._Handler__ask_peer_and_listen(msg, "GetStateMetadata")
        result = shim_pb2.StateMetadataResult.FromString(reply.payload)
        return {entry.metakey: bytes(entry.value) for entry in result.entries}

    async def _Handler__ask_peer_and_listen(self, msg: shim_pb2.ChaincodeMessage, action: str) -> Any:
        # Replaces Handler.__ask_peer_and_listen (name-mangled), used by every ledger call.
        future = asyncio.get_running_loop().create_future()
        await self.msg_queue_handler.queue_msg(QueueMessage(msg, action, future))
        reply = await future
        if reply.type == shim_pb2.ChaincodeMessage.ERROR:
            raise PeerError(f"{action}: {reply.payload.decode('utf-8', 'replace')}")
        return reply


def event_of(stub: Any) -> tuple[str, bytes] | None:
    """The last event the transaction set through ``stub.set_event`` (one per tx, as in Fabric)."""
    events = stub.get_events()
    if not events:
        return None
    return events[-1].event_name, events[-1].payload


__all__ = [
    "VALIDATION_PARAMETER",
    "ChaincodeStub",
    "CompatHandler",
    "Dispatcher",
    "Invocation",
    "PeerError",
    "SerializedStream",
    "event_of",
    "load_shim",
    "transient_map",
]

"""The chaincode-as-a-service gRPC server: one per organisation, dialled by that org's peer."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
from fabric_protos.peer import chaincode_shim_pb2 as shim_pb2
from fabric_protos.peer import chaincode_shim_pb2_grpc as shim_grpc

from fedledger.chaincode.errors import ContractError
from fedledger.chaincode.fabric.compat import RESPONSE_ERROR, RESPONSE_OK, CompatHandler, Invocation
from fedledger.chaincode.fabric.context import FabricLedgerContext

LOG = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
STOP_GRACE_S = 3.0


class Contract(Protocol):
    def invoke(self, ctx: Any, function: str, args: Sequence[bytes | str]) -> bytes: ...


@dataclass(frozen=True)
class ServerConfig:
    """How to run one chaincode server. ``from_env`` reads the ccaas environment variables."""

    chaincode_id: str
    address: str
    tls_key: Path | None = None
    tls_cert: Path | None = None
    client_ca: Path | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    workers: int = 8
    grpc_options: tuple[tuple[str, Any], ...] = field(default=())
    clock_offset_file: Path | None = None  # tests only: seconds added to this server's clock (see endorser_clock)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ServerConfig:
        env = dict(os.environ if env is None else env)
        missing = [name for name in ("CHAINCODE_ID", "CHAINCODE_SERVER_ADDRESS") if not env.get(name)]
        if missing:
            raise ValueError(f"set {' and '.join(missing)} (the package ID and host:port to listen on)")

        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        return cls(
            chaincode_id=env["CHAINCODE_ID"],
            address=env["CHAINCODE_SERVER_ADDRESS"],
            tls_key=path("CHAINCODE_TLS_KEY"),
            tls_cert=path("CHAINCODE_TLS_CERT"),
            client_ca=path("CHAINCODE_TLS_CLIENT_CA"),
            max_message_bytes=int(env.get("CHAINCODE_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES)),
            workers=int(env.get("CHAINCODE_WORKERS", "8")),
            clock_offset_file=path("FEDLEDGER_CLOCK_OFFSET_FILE"),
        )

    def endorser_clock(self) -> Callable[[], float]:
        """This server's clock, against which proposal timestamps are bounded. Tests that move the consortium's
        time past deadlines move it for the endorsers too, through FEDLEDGER_CLOCK_OFFSET_FILE (a number of
        seconds; a missing file is 0). Production never sets it."""
        offset_file = self.clock_offset_file
        if offset_file is None:
            return time.time

        def clock() -> float:
            try:
                return time.time() + float(offset_file.read_text().strip() or 0)
            except FileNotFoundError:
                return time.time()

        return clock


class ContractDispatcher:
    """Runs the synchronous contract in worker threads over a FabricLedgerContext."""

    def __init__(self, contract: Contract, *, workers: int = 8, clock: Callable[[], float] = time.time) -> None:
        self._contract = contract
        self._clock = clock
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="tx")

    async def __call__(self, stub: Any, function: str, args: list[bytes]) -> Invocation:
        loop = asyncio.get_running_loop()
        ctx = FabricLedgerContext(stub, loop, self._clock)
        try:
            payload = await loop.run_in_executor(self._pool, self._contract.invoke, ctx, function, args)
        except ContractError as err:
            LOG.info("tx %s %s rejected: %s", stub.tx_id, function, err)
            return Invocation(status=RESPONSE_ERROR, message=str(err))
        except Exception as exc:
            LOG.exception("tx %s %s failed", stub.tx_id, function)
            return Invocation(status=RESPONSE_ERROR, message=f"[INTERNAL] {type(exc).__name__}: {exc}")
        return Invocation(status=RESPONSE_OK, payload=payload or b"", event=ctx.event)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class ChaincodeService(shim_grpc.ChaincodeServicer):
    """One Connect stream per peer. On shutdown each stream finishes its in-flight transactions
    and then ends cleanly, instead of being cancelled by the server mid-stream."""

    def __init__(self, chaincode_id: str, dispatcher: ContractDispatcher) -> None:
        self._chaincode_id = chaincode_id
        self.dispatcher = dispatcher
        self._stopping = asyncio.Event()
        self._streams: set[asyncio.Task[None]] = set()

    async def Connect(
        self, request_iterator: AsyncIterable[shim_pb2.ChaincodeMessage], context: grpc.aio.ServicerContext
    ) -> None:
        LOG.info("peer connected: %s", context.peer())
        handler = CompatHandler(self._chaincode_id, self.dispatcher)
        chat = asyncio.ensure_future(handler.chat_with_peer(request_iterator, context))
        stopping = asyncio.ensure_future(self._stopping.wait())
        self._streams.add(chat)
        try:
            await asyncio.wait({chat, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not chat.done():
                if handler._pending_tasks:
                    await asyncio.wait(set(handler._pending_tasks), timeout=STOP_GRACE_S)
                chat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chat
        finally:
            stopping.cancel()
            self._streams.discard(chat)
        LOG.info("peer stream closed: %s", context.peer())

    async def stop(self, timeout: float) -> None:
        """Ends every stream once its in-flight transactions are done (at most ``timeout``)."""
        self._stopping.set()
        if self._streams:
            await asyncio.wait(set(self._streams), timeout=timeout)


def build_server(config: ServerConfig, contract: Contract) -> tuple[grpc.aio.Server, ChaincodeService]:
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        # No SO_REUSEPORT: a second server on the same port must fail instead of stealing streams.
        ("grpc.so_reuseport", 0),
        *config.grpc_options,
    ]
    server = grpc.aio.server(options=options)
    dispatcher = ContractDispatcher(contract, workers=config.workers, clock=config.endorser_clock())
    service = ChaincodeService(config.chaincode_id, dispatcher)
    shim_grpc.add_ChaincodeServicer_to_server(service, server)
    if config.tls_key and config.tls_cert:
        client_ca = config.client_ca.read_bytes() if config.client_ca else None
        credentials = grpc.ssl_server_credentials(
            [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )
        port = server.add_secure_port(config.address, credentials)
    else:
        port = server.add_insecure_port(config.address)
    if port == 0:
        raise OSError(f"cannot listen on {config.address}")
    return server, service


async def serve(config: ServerConfig, contract: Contract) -> None:
    """Serves until SIGTERM/SIGINT."""
    server, service = build_server(config, contract)
    await server.start()
    LOG.info(
        "chaincode %s listening on %s (tls=%s, mutual=%s, max message %d bytes)",
        config.chaincode_id,
        config.address,
        config.tls_cert is not None,
        config.client_ca is not None,
        config.max_message_bytes,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    LOG.info("stopping")
    await service.stop(STOP_GRACE_S)
    await server.stop(0.5)
    service.dispatcher.shutdown()

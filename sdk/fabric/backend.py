"""The Fabric Gateway backend: evaluate, submit and event streaming over the Gateway gRPC API.

Fabric 2.4+ peers embed the Gateway service, which does endorsement planning, ordering and
commit tracking for the client. A client therefore needs only one gRPC connection to one peer
and four steps per transaction, as in fabric-gateway's ``pkg/client``:

1. Endorse a signed proposal; the gateway collects endorsements that satisfy the policy and
   returns the prepared transaction envelope, unsigned.
2. Sign the envelope payload and Submit it; the gateway hands it to the orderers.
3. Ask CommitStatus (a signed request) until the peer has validated the block.
4. Map a non-VALID validation code to :class:`~fedledger.sdk.errors.CommitError`.

Read/write conflicts (``MVCC_READ_CONFLICT``, ``PHANTOM_READ_CONFLICT``) are not errors of the
caller: another transaction changed what this one read between endorsement and commit. They are
retried with a *fresh* proposal (new nonce, so a new transaction id, re-executed against current
state), a bounded number of times, with a short randomised back-off so that the retries of
colliding clients do not collide again.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import grpc
from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc

from fedledger.identity import Identity, Signer
from fedledger.sdk.backend import ChaincodeEvent, Proposal, SubmitResult
from fedledger.sdk.errors import (
    CommitError,
    CommitStatusError,
    EndorseError,
    GatewayError,
    SubmitError,
)
from fedledger.sdk.fabric import protocol
from fedledger.sdk.fabric.grpcerrors import to_gateway_error

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "RETRYABLE_CODES",
    "ChaincodeEventStream",
    "EndorsedTransaction",
    "FabricGatewayBackend",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 100 * 1024 * 1024
"""gRPC's default 4 MiB cap would refuse update bytes sent as transient data; 100 MiB leaves
room for 50 MB updates plus protobuf overhead (the peer's own limit must be raised to match)."""

RETRYABLE_CODES = frozenset({"MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT"})
"""Validation codes that mean "state moved under you": re-endorsing can succeed."""


@dataclass(frozen=True)
class EndorsedTransaction:
    """An endorsed, not yet ordered transaction: the contract's result and the prepared envelope."""

    channel: str
    transaction_id: str
    result: bytes
    envelope: common_pb2.Envelope


class FabricGatewayBackend:
    """A :class:`~fedledger.sdk.backend.Backend` that talks to one peer's Gateway service.

    One instance holds one gRPC channel and signs as one identity; it is safe to share between
    threads (gRPC channels and the signer are thread-safe). Timeouts are in seconds and apply
    per call; defaults follow fabric-gateway (evaluate 5 s, endorse 15 s, submit 5 s, commit
    status 60 s).

    ``tls_root_cert`` is the PEM (bytes) or path of the CA that issued the peer's TLS
    certificate; ``None`` means a plaintext connection. ``server_name_override`` is the TLS
    host name to check when ``endpoint`` is an address the certificate does not name (e.g.
    ``127.0.0.1:7051`` for ``peer0.org1.example.com``). ``tls_client_cert``/``tls_client_key``
    are only needed when the peer requires mutual TLS.

    ``clock`` (seconds since the epoch, like ``time.time``) stamps each proposal's channel
    header; the contract reads that stamp as the transaction time (``get_tx_timestamp``), so a
    fake clock moves transactions past deadlines. Peers do not check it against their own
    clock. ``None`` uses the wall clock.
    """

    def __init__(
        self,
        identity: Identity,
        signer: Signer,
        *,
        endpoint: str,
        tls_root_cert: bytes | str | None = None,
        server_name_override: str | None = None,
        tls_client_cert: bytes | None = None,
        tls_client_key: bytes | None = None,
        evaluate_timeout: float = 5.0,
        endorse_timeout: float = 15.0,
        submit_timeout: float = 5.0,
        commit_status_timeout: float = 60.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        mvcc_retries: int = 3,
        retry_backoff: float = 0.05,
        channel: grpc.Channel | None = None,
        clock: Callable[[], float] | None = None,
        committed_on: Sequence[str] = (),
    ) -> None:
        for name, value in (
            ("evaluate_timeout", evaluate_timeout),
            ("endorse_timeout", endorse_timeout),
            ("submit_timeout", submit_timeout),
            ("commit_status_timeout", commit_status_timeout),
        ):
            if value <= 0:
                raise ValueError(f"The {name!r} parameter must be > 0 seconds. Got {value!r} instead.")
        if mvcc_retries < 0:
            raise ValueError(f"The 'mvcc_retries' parameter must be >= 0. Got {mvcc_retries!r} instead.")
        self.identity = identity
        self.endpoint = endpoint
        self._signer = signer
        self._creator = protocol.serialize_identity(identity)
        self.evaluate_timeout = evaluate_timeout
        self.endorse_timeout = endorse_timeout
        self.submit_timeout = submit_timeout
        self.commit_status_timeout = commit_status_timeout
        self.mvcc_retries = mvcc_retries
        self.retry_backoff = retry_backoff
        self._clock = clock
        self.committed_on = tuple(committed_on)
        self._channel = channel or _open_channel(
            endpoint,
            tls_root_cert=tls_root_cert,
            server_name_override=server_name_override,
            tls_client_cert=tls_client_cert,
            tls_client_key=tls_client_key,
            max_message_bytes=max_message_bytes,
        )
        self._stub = gateway_pb2_grpc.GatewayStub(self._channel)
        self._streams: set[ChaincodeEventStream] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.retried = 0
        """How many transactions were re-proposed after a read conflict (for tests and metrics)."""

    # -- Backend port ------------------------------------------------------------------

    def evaluate(self, proposal: Proposal) -> bytes:
        """Runs the transaction on one endorser (of ``endorsing_orgs`` if given); no commit."""
        self._check_open()
        prepared = self._prepare(proposal)
        request = gateway_pb2.EvaluateRequest(
            transaction_id=prepared.transaction_id,
            channel_id=proposal.channel,
            proposed_transaction=prepared.signed(self._signer),
            target_organizations=list(proposal.endorsing_orgs),
        )
        try:
            response = self._stub.Evaluate(request, timeout=self.evaluate_timeout)
        except grpc.RpcError as error:
            raise to_gateway_error(error, step=EndorseError, transaction_id=prepared.transaction_id) from None
        return response.result.payload

    def wait_for_block(self, channel: str, number: int, orgs: Sequence[str], timeout: float = 30.0) -> None:
        """Returns once a peer of each of ``orgs`` has committed block ``number`` (qscc through the gateway).

        Commit status only speaks for the gateway's own peer; another organisation's peer may still be a
        block behind, so a transaction endorsed by several organisations right after this one could read
        different states and fail. ``committed_on=`` makes every submit wait for that.
        """
        deadline = time.monotonic() + timeout
        for org in orgs:
            while True:
                info = self.evaluate(Proposal(channel, "qscc", "GetChainInfo", (channel.encode(),), {}, (org,)))
                if ledger_pb2.BlockchainInfo.FromString(info).height > number:
                    break
                if time.monotonic() > deadline:
                    raise CommitStatusError(
                        f"the peer of {org} has not committed block {number} within {timeout} s", code="TIMEOUT"
                    )
                time.sleep(0.005)

    def submit(self, proposal: Proposal) -> SubmitResult:
        """Endorse → sign → submit → commit status (and, with ``committed_on``, every listed org's peer);
        retries read conflicts with new proposals."""
        self._check_open()
        attempts = self.mvcc_retries + 1
        for attempt in range(1, attempts + 1):
            transaction = self.endorse(proposal)
            transaction_id = transaction.transaction_id
            self.submit_endorsed(transaction)
            name, block_number = self.commit_status(proposal.channel, transaction_id)
            if name == "VALID":
                self.wait_for_block(proposal.channel, block_number, self.committed_on)
                return SubmitResult(transaction_id, block_number, transaction.result)
            if name in RETRYABLE_CODES and attempt < attempts:
                with self._lock:
                    self.retried += 1
                delay = self.retry_backoff * attempt * (0.5 + random.random())
                logger.info(
                    "%s of %s committed %s in block %d; retry %d/%d in %.0f ms",
                    transaction_id,
                    proposal.function,
                    name,
                    block_number,
                    attempt,
                    self.mvcc_retries,
                    delay * 1000,
                )
                time.sleep(delay)
                continue
            raise CommitError(
                f"Transaction {proposal.function} was ordered in block {block_number} but is invalid"
                + (f" after {attempt} attempts" if attempt > 1 else ""),
                code=name,
                transaction_id=transaction_id,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def chaincode_events(
        self,
        channel: str,
        chaincode: str,
        *,
        start_block: int | None = None,
        after_transaction_id: str = "",
    ) -> ChaincodeEventStream:
        """Streams events of VALID transactions from ``start_block`` (None: new ones only).

        The stream is opened before this returns, so nothing committed afterwards is missed.
        Resume after the last processed event with ``start_block=event.block_number`` and
        ``after_transaction_id=event.transaction_id``. Stop with ``stream.close()`` (or
        :meth:`close` on the backend); the iterator then ends normally.
        """
        self._check_open()
        request = protocol.chaincode_events_request(
            channel=channel,
            chaincode=chaincode,
            creator=self._creator,
            signer=self._signer,
            start_block=start_block,
            after_transaction_id=after_transaction_id,
        )
        call = self._stub.ChaincodeEvents(request)
        stream = ChaincodeEventStream(call, on_close=self._forget_stream)
        with self._lock:
            if self._closed:
                call.cancel()
                raise GatewayError("The backend is closed.", code="CANCELLED")
            self._streams.add(stream)
        return stream

    def close(self) -> None:
        """Cancels open event streams and closes the gRPC channel; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            streams = list(self._streams)
        for stream in streams:
            stream.close()
        self._channel.close()

    def __enter__(self) -> FabricGatewayBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- steps -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise GatewayError("The backend is closed.", code="CANCELLED")

    def _prepare(self, proposal: Proposal) -> protocol.PreparedProposal:
        context = protocol.new_transaction_context(self.identity)
        return protocol.new_proposal(
            context,
            channel=proposal.channel,
            chaincode=proposal.chaincode,
            function=proposal.function,
            arguments=proposal.arguments,
            transient=proposal.transient,
            timestamp_ns=None if self._clock is None else round(self._clock() * 1e9),
        )

    def endorse(self, proposal: Proposal) -> EndorsedTransaction:
        """Step 1: collects endorsements satisfying the policy; nothing is ordered yet.

        Public (beyond the Backend port) so that a caller can inspect the result before
        deciding to submit, as with fabric-gateway's ``Proposal.Endorse``.
        """
        self._check_open()
        prepared = self._prepare(proposal)
        transaction_id = prepared.transaction_id
        request = gateway_pb2.EndorseRequest(
            transaction_id=transaction_id,
            channel_id=proposal.channel,
            proposed_transaction=prepared.signed(self._signer),
            endorsing_organizations=list(proposal.endorsing_orgs),
        )
        try:
            response = self._stub.Endorse(request, timeout=self.endorse_timeout)
        except grpc.RpcError as error:
            raise to_gateway_error(error, step=EndorseError, transaction_id=transaction_id) from None
        envelope = response.prepared_transaction
        info = protocol.parse_envelope(envelope)
        if info.transaction_id != transaction_id or info.channel != proposal.channel:
            raise EndorseError(
                "The gateway returned a transaction that is not the one proposed "
                f"({info.transaction_id} on {info.channel!r}); it was not signed.",
                code="INTERNAL",
                transaction_id=transaction_id,
            )
        return EndorsedTransaction(proposal.channel, transaction_id, info.result, envelope)

    def submit_endorsed(self, transaction: EndorsedTransaction) -> None:
        """Step 2: signs the prepared envelope and hands it to ordering (does not wait)."""
        request = gateway_pb2.SubmitRequest(
            transaction_id=transaction.transaction_id,
            channel_id=transaction.channel,
            prepared_transaction=protocol.sign_envelope(transaction.envelope, self._signer),
        )
        try:
            self._stub.Submit(request, timeout=self.submit_timeout)
        except grpc.RpcError as error:
            raise to_gateway_error(error, step=SubmitError, transaction_id=transaction.transaction_id) from None

    def commit_status(self, channel: str, transaction_id: str) -> tuple[str, int]:
        """Step 3: waits until the peer committed the transaction; its validation code and block."""
        request = protocol.commit_status_request(
            channel=channel, transaction_id=transaction_id, creator=self._creator, signer=self._signer
        )
        try:
            response = self._stub.CommitStatus(request, timeout=self.commit_status_timeout)
        except grpc.RpcError as error:
            raise to_gateway_error(error, step=CommitStatusError, transaction_id=transaction_id) from None
        return protocol.validation_code_name(response.result), response.block_number

    def _forget_stream(self, stream: ChaincodeEventStream) -> None:
        with self._lock:
            self._streams.discard(stream)


class ChaincodeEventStream(Iterator[ChaincodeEvent]):
    """An open ChaincodeEvents call; iterate it for events, ``close()`` to stop it.

    Remembers the position of the last event it yielded (``checkpoint``) so that a reader can
    reconnect exactly after it when the stream breaks.
    """

    def __init__(self, call: grpc.Call, *, on_close: Callable[[ChaincodeEventStream], None] | None = None) -> None:
        self._call = call
        self._responses: Iterator[gateway_pb2.ChaincodeEventsResponse] = iter(call)  # type: ignore[call-overload]
        self._pending: list[ChaincodeEvent] = []
        self._on_close = on_close
        self._cancelled = False
        self.checkpoint: tuple[int, str] | None = None

    def __iter__(self) -> ChaincodeEventStream:
        return self

    def __next__(self) -> ChaincodeEvent:
        while not self._pending:
            try:
                response = next(self._responses)
            except StopIteration:
                raise
            except grpc.RpcError as error:
                if self._cancelled or error.code() == grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                    raise StopIteration from None
                raise to_gateway_error(error, step=GatewayError, transaction_id="") from None
            self._pending.extend(
                ChaincodeEvent(
                    block_number=response.block_number,
                    transaction_id=event.tx_id,
                    chaincode=event.chaincode_id,
                    name=event.event_name,
                    payload=event.payload,
                )
                for event in response.events
            )
        event = self._pending.pop(0)
        self.checkpoint = (event.block_number, event.transaction_id)
        return event

    def close(self) -> None:
        """Cancels the call; a thread blocked in ``next()`` returns with StopIteration."""
        self._cancelled = True
        self._call.cancel()
        if self._on_close is not None:
            self._on_close(self)


def _read_pem(value: bytes | str | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as file:
        return file.read()


def _open_channel(
    endpoint: str,
    *,
    tls_root_cert: bytes | str | None,
    server_name_override: str | None,
    tls_client_cert: bytes | None,
    tls_client_key: bytes | None,
    max_message_bytes: int,
) -> grpc.Channel:
    options: list[tuple[str, object]] = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Long idle event streams: ping, but less often than the peer's keepalive.minInterval (60 s).
        ("grpc.keepalive_time_ms", 120_000),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]
    root = _read_pem(tls_root_cert)
    if root is None:
        logger.warning("Connecting to %s without TLS", endpoint)
        return grpc.insecure_channel(endpoint, options=options)
    if server_name_override:
        options.append(("grpc.ssl_target_name_override", server_name_override))
        options.append(("grpc.default_authority", server_name_override))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=tls_client_key, certificate_chain=tls_client_cert
    )
    return grpc.secure_channel(endpoint, credentials, options=options)

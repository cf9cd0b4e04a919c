"""The Fabric Gateway backend: evaluate, submit and event streaming over the Gateway gRPC API.

Fabric 2.4+ peers embed the Gateway service, which does endorsement planning, ordering and
commit tracking for the client. A client therefore needs only one gRPC connection to one peer
and four steps per transaction, as in fabric-gateway's ``pkg/client``:

1. Endorse a signed proposal; the gateway collects endorsements that satisfy the policy and
   returns the prepared transaction envelope, unsigned.
2. Sign the envelope payload and Submit it; the gateway hands it to the orderers.
3. Ask CommitStatus (a signed request) until the peer has validated the block.
4. Map a non-VALID validation code to :class:`~fedledger.sdk.errors.CommitError`.

Faults of the network are ridden out where that is safe (measured on a 2.5.16 network): an
orderer acknowledges a transaction and its Raft leader dies before cutting it into a block, so
the transaction is silently dropped. Commit status is therefore awaited ``resubmit_after``
seconds at a time, and each time it does not come the *same signed envelope* is submitted again
(the gateway picks another orderer; a copy that arrives after the first one committed is
invalidated as ``DUPLICATE_TXID``, so nothing is applied twice). A gateway peer that cannot be
reached is replaced by the next configured one (:mod:`~fedledger.sdk.fabric.endpoints`).

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
from fabric_protos.gateway import gateway_pb2

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
from fedledger.sdk.fabric.endpoints import GatewayEndpoint, GatewayPool
from fedledger.sdk.fabric.grpcerrors import NEXT_STEP, to_gateway_error

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

RESUBMITTABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"})
"""Submit failures after which the same envelope may be submitted again: no orderer took it (no Raft
leader during an election, orderers unreachable), or it may have been taken but the answer was lost."""

SUBMIT_PAUSE = 1.0
"""Seconds between submissions of an envelope that no orderer accepted (a Raft election takes ~2.4 s)."""


@dataclass(frozen=True)
class EndorsedTransaction:
    """An endorsed, not yet ordered transaction: the contract's result and the prepared envelope."""

    channel: str
    transaction_id: str
    result: bytes
    envelope: common_pb2.Envelope


class FabricGatewayBackend:
    """A :class:`~fedledger.sdk.backend.Backend` that talks to a peer's Gateway service.

    One instance signs as one identity and talks to one gateway peer at a time (``endpoint``
    first, then each of ``fallbacks`` when the current one cannot be reached); it is safe to
    share between threads (gRPC channels and the signer are thread-safe). Timeouts are in
    seconds and apply per call; defaults follow fabric-gateway (evaluate 5 s, endorse 15 s,
    submit 5 s, commit status 60 s). ``commit_status_timeout`` bounds the whole wait for a
    commit, during which the signed transaction is submitted again every ``resubmit_after``
    seconds without a commit status (see the module doc).

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
        resubmit_after: float = 10.0,
        fallbacks: Sequence[GatewayEndpoint] = (),
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
            ("resubmit_after", resubmit_after),
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
        self.resubmit_after = resubmit_after
        self.mvcc_retries = mvcc_retries
        self.retry_backoff = retry_backoff
        self._clock = clock
        self.committed_on = tuple(committed_on)
        primary = GatewayEndpoint(endpoint, tls_root_cert, server_name_override, identity.mspid)
        self.gateways = GatewayPool(
            [primary, *fallbacks],
            tls_client_cert=tls_client_cert,
            tls_client_key=tls_client_key,
            max_message_bytes=max_message_bytes,
            first_channel=channel,
        )
        self._streams: set[ChaincodeEventStream] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.retried = 0
        """How many transactions were re-proposed after a read conflict (for tests and metrics)."""
        self.resubmitted = 0
        """How many times a signed transaction was submitted again (for tests and metrics)."""

    # -- Backend port ------------------------------------------------------------------

    def evaluate(self, proposal: Proposal) -> bytes:
        """Runs the transaction on one endorser (of ``endorsing_orgs`` if given, through a gateway of theirs only:
        its transient data may be theirs alone); no commit."""
        return self._evaluate(proposal, organizations=proposal.endorsing_orgs)

    def _evaluate(self, proposal: Proposal, *, organizations: Sequence[str]) -> bytes:
        self._check_open()
        prepared = self._prepare(proposal)
        request = gateway_pb2.EvaluateRequest(
            transaction_id=prepared.transaction_id,
            channel_id=proposal.channel,
            proposed_transaction=prepared.signed(self._signer),
            target_organizations=list(proposal.endorsing_orgs),
        )
        transaction_id = prepared.transaction_id
        response = self.gateways.call(
            "Evaluate",
            request,
            timeout=self.evaluate_timeout,
            step=EndorseError,
            transaction_id=transaction_id,
            organizations=organizations,
        )
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
                try:
                    # Any gateway may ask: the query carries nothing secret.
                    query = Proposal(channel, "qscc", "GetChainInfo", (channel.encode(),), {}, (org,))
                    info = self._evaluate(query, organizations=())
                except EndorseError as error:
                    # A peer that is down endorses nothing, so it cannot make the next transaction fail either;
                    # failing here would report a committed transaction as failed.
                    logger.warning("Not waiting for %s to commit block %d: %s", org, number, str(error).splitlines()[0])
                    break
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
            name, block_number = self.order(transaction)
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
        call = self.gateways.stub().ChaincodeEvents(request)
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
        self.gateways.close()

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
        """Step 1: collects endorsements satisfying the policy; nothing is ordered yet. With ``endorsing_orgs``, only
        peers of those organisations endorse, and only a gateway of theirs sees the proposal.

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
        response = self.gateways.call(
            "Endorse",
            request,
            timeout=self.endorse_timeout,
            step=EndorseError,
            transaction_id=transaction_id,
            organizations=proposal.endorsing_orgs,
        )
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
        self.submit_signed(transaction, protocol.sign_envelope(transaction.envelope, self._signer))

    def submit_signed(self, transaction: EndorsedTransaction, envelope: common_pb2.Envelope) -> None:
        """Step 2 with an envelope signed already: hands it (again) to ordering."""
        request = gateway_pb2.SubmitRequest(
            transaction_id=transaction.transaction_id, channel_id=transaction.channel, prepared_transaction=envelope
        )
        self.gateways.call(
            "Submit", request, timeout=self.submit_timeout, step=SubmitError, transaction_id=transaction.transaction_id
        )

    def commit_status(self, channel: str, transaction_id: str, *, timeout: float | None = None) -> tuple[str, int]:
        """Step 3: waits (``timeout``, default ``commit_status_timeout``) until the gateway's peer committed
        the transaction; its validation code and block."""
        request = protocol.commit_status_request(
            channel=channel, transaction_id=transaction_id, creator=self._creator, signer=self._signer
        )
        response = self.gateways.call(
            "CommitStatus",
            request,
            timeout=self.commit_status_timeout if timeout is None else timeout,
            step=CommitStatusError,
            transaction_id=transaction_id,
        )
        return protocol.validation_code_name(response.result), response.block_number

    def order(self, transaction: EndorsedTransaction) -> tuple[str, int]:
        """Steps 2 and 3, riding out lost transactions: signs once, submits, and submits the same envelope
        again whenever no commit status came within ``resubmit_after`` s, until ``commit_status_timeout``.

        Returns the validation code and block of the transaction's first committed copy: a later copy is
        invalidated as ``DUPLICATE_TXID``, and the ledger's transaction index answers with the first.
        """
        envelope = protocol.sign_envelope(transaction.envelope, self._signer)
        transaction_id = transaction.transaction_id
        deadline = time.monotonic() + self.commit_status_timeout
        submissions = 0
        while True:
            wait = min(self.resubmit_after, max(deadline - time.monotonic(), 0.001))
            try:
                self.submit_signed(transaction, envelope)
            except SubmitError as error:
                if error.code not in RESUBMITTABLE_CODES or time.monotonic() >= deadline:
                    raise
                logger.warning("%s not taken by ordering (%s); trying again", transaction_id, error.code)
                wait = min(SUBMIT_PAUSE, wait)  # an earlier copy may still commit meanwhile: keep asking
            submissions += 1
            try:
                name, block_number = self.commit_status(transaction.channel, transaction_id, timeout=wait)
            except CommitStatusError as error:
                if error.code != "DEADLINE_EXCEEDED":
                    raise
                if time.monotonic() >= deadline:
                    raise CommitStatusError(
                        f"no peer reported transaction {transaction_id} committed within {self.commit_status_timeout:g}"
                        f" s after {submissions} submissions (ordering service without a leader or quorum?); "
                        + NEXT_STEP["DEADLINE_EXCEEDED"],
                        code="DEADLINE_EXCEEDED",
                        transaction_id=transaction_id,
                    ) from None
                with self._lock:
                    self.resubmitted += 1
                logger.warning(
                    "No commit status for %s after %.1f s: submitting the same signed transaction again (%d)",
                    transaction_id,
                    wait,
                    submissions,
                )
                continue
            if name == "DUPLICATE_TXID" and submissions > 1:
                # This copy lost to an earlier one, which did commit: report that one.
                name, block_number = self.commit_status(transaction.channel, transaction_id)
            return name, block_number

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

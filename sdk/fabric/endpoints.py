"""The gateway peers a backend may talk to, and failing over between them.

A backend is configured with its own organisation's gateway peer first and, as fallbacks, the
other gateway peers the connection profile names. Every call goes to the current gateway; when
that peer cannot be reached at all (gRPC ``UNAVAILABLE`` with no gateway error detail, i.e. the
connection itself failed), the same request goes to the next gateway, and that one stays current.
Every request the backend sends is safe to repeat on another gateway: evaluations and
endorsements order nothing, a re-submitted envelope is invalidated as a duplicate transaction id,
and commit status is a read. A gateway that answered, even with ``UNAVAILABLE`` about endorsers
or orderers behind it, is not skipped: another gateway would see the same network.

A proposal meant for some organisations' endorsers only (``endorsing_orgs``) may carry transient data that
is one organisation's secret (its share of an update): such a call goes only to gateway peers of those
organisations (``organizations=``), never to another organisation's gateway, also not when failing over;
when none of them is configured or reachable it fails instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from fabric_protos.gateway import gateway_pb2_grpc

from fedledger.sdk.errors import GatewayError
from fedledger.sdk.fabric.grpcerrors import error_details, to_gateway_error

__all__ = ["GatewayEndpoint", "GatewayPool", "open_channel"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayEndpoint:
    """One gateway peer: its address, the CA of its TLS certificate (PEM bytes or a path; ``None``
    for plaintext) and the TLS host name to check when the address is not in the certificate."""

    address: str
    tls_root_cert: bytes | str | None = None
    server_name_override: str | None = None
    mspid: str = ""

    def __str__(self) -> str:
        return f"{self.address} ({self.mspid})" if self.mspid else self.address


def unreachable(error: grpc.RpcError) -> bool:
    """The gateway peer itself could not be reached (it did not answer about anything behind it)."""
    return isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.UNAVAILABLE and not error_details(error)


class GatewayPool:
    """gRPC channels to an ordered list of gateway peers, opened on first use; thread-safe."""

    def __init__(
        self,
        endpoints: Sequence[GatewayEndpoint],
        *,
        tls_client_cert: bytes | None = None,
        tls_client_key: bytes | None = None,
        max_message_bytes: int,
        first_channel: grpc.Channel | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("A backend needs at least one gateway endpoint.")
        self.endpoints = tuple(endpoints)
        self._client_cert = tls_client_cert
        self._client_key = tls_client_key
        self._max_message_bytes = max_message_bytes
        self._channels: dict[int, grpc.Channel] = {} if first_channel is None else {0: first_channel}
        self._current = 0
        self._lock = threading.Lock()
        self.failovers = 0
        """How many times a call moved on to another gateway (for tests and metrics)."""

    @property
    def current(self) -> GatewayEndpoint:
        return self.endpoints[self._current]

    def stub(self, index: int | None = None) -> gateway_pb2_grpc.GatewayStub:
        """The Gateway stub of endpoint ``index`` (default: the current one)."""
        index = self._current if index is None else index
        with self._lock:
            channel = self._channels.get(index)
            if channel is None:
                endpoint = self.endpoints[index]
                channel = open_channel(
                    endpoint,
                    tls_client_cert=self._client_cert,
                    tls_client_key=self._client_key,
                    max_message_bytes=self._max_message_bytes,
                )
                self._channels[index] = channel
        return gateway_pb2_grpc.GatewayStub(channel)

    def call(
        self,
        method: str,
        request: Any,
        *,
        timeout: float,
        step: type[GatewayError],
        transaction_id: str,
        organizations: Sequence[str] = (),
    ) -> Any:
        """``method`` (``"Endorse"``...) on the current gateway, else on the next reachable ones, each once.

        ``organizations``: only gateways of these MSP IDs may see the request (the current one stays current
        unless it was one of them and was unreachable). Raises ``step`` (with what to do next) for an answered
        failure, or when no (allowed) gateway could be reached.
        """
        start = self._current
        count = len(self.endpoints)
        order = [(start + offset) % count for offset in range(count)]
        if organizations:
            order = [i for i in order if self.endpoints[i].mspid in organizations]
            if not order:
                raise step(
                    f"{step.step} failed: no gateway peer of {_names(organizations)} is configured (have "
                    f"{', '.join(str(e) for e in self.endpoints)}); a proposal for {_names(organizations)} goes only "
                    "to their gateways, as its transient data may be theirs alone: add one to the connection profile",
                    code="NO_GATEWAY",
                    transaction_id=transaction_id,
                )
        for position, index in enumerate(order):
            try:
                response = getattr(self.stub(index), method)(request, timeout=timeout)
            except grpc.RpcError as error:
                if unreachable(error) and position < len(order) - 1:
                    logger.warning(
                        "Gateway %s is unreachable (%s); trying %s",
                        self.endpoints[index],
                        _first_line(error),
                        self.endpoints[order[position + 1]],
                    )
                    continue
                tried = [str(self.endpoints[k]) for k in order[: position + 1]]
                if organizations and unreachable(error):
                    raise step(
                        f"{step.step} failed: no gateway peer of {_names(organizations)} is reachable (tried "
                        f"{', '.join(tried)}); a proposal for {_names(organizations)} goes only to their gateways, "
                        "as its transient data may be theirs alone: start one of them and try again",
                        code="UNAVAILABLE",
                        transaction_id=transaction_id,
                    ) from None
                raise to_gateway_error(error, step=step, transaction_id=transaction_id, gateways=tried) from None
            if index != start and order[0] == start:
                with self._lock:
                    self._current = index
                    self.failovers += 1
                logger.warning("Now using gateway %s", self.endpoints[index])
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            channels = list(self._channels.values())
            self._channels.clear()
        for channel in channels:
            channel.close()


def _names(mspids: Sequence[str]) -> str:
    return " or ".join(mspids)


def _first_line(error: grpc.RpcError) -> str:
    text = error.details() if isinstance(error, grpc.Call) else str(error)
    return (text or "").splitlines()[0] if text else "no detail"


def _read_pem(value: bytes | str | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as file:
        return file.read()


def open_channel(
    endpoint: GatewayEndpoint,
    *,
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
    root = _read_pem(endpoint.tls_root_cert)
    if root is None:
        logger.warning("Connecting to %s without TLS", endpoint.address)
        return grpc.insecure_channel(endpoint.address, options=options)
    if endpoint.server_name_override:
        options.append(("grpc.ssl_target_name_override", endpoint.server_name_override))
        options.append(("grpc.default_authority", endpoint.server_name_override))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=tls_client_key, certificate_chain=tls_client_cert
    )
    return grpc.secure_channel(endpoint.address, credentials, options=options)

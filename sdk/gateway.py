"""The client surface, modelled on fabric-gateway: connect → get_network → get_contract →
submit / evaluate / events. Every ledger (embedded or Fabric) plugs in as a Backend."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from fedledger.identity import Identity, Signer
from fedledger.sdk.backend import Backend, ChaincodeEvent, Proposal, SubmitResult

logger = logging.getLogger(__name__)

Argument = str | bytes | int | float

__all__ = ["Contract", "EventStream", "Gateway", "Network", "connect"]


def _encode(argument: Argument) -> bytes:
    if isinstance(argument, bytes):
        return argument
    if isinstance(argument, bool):
        raise TypeError("pass booleans as 'true'/'false' strings; the contract parses strings")
    return str(argument).encode()


class EventStream:
    """Iterator of chaincode events; ``close()`` (or leaving a ``with`` block) ends it."""

    def __init__(self, events: Iterator[ChaincodeEvent], stop: Callable[[], None]) -> None:
        self._events = events
        self._stop = stop

    def __iter__(self) -> Iterator[ChaincodeEvent]:
        return self._events

    def __next__(self) -> ChaincodeEvent:
        return next(self._events)

    def close(self) -> None:
        self._stop()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Contract:
    def __init__(self, backend: Backend, channel: str, chaincode: str) -> None:
        self._backend = backend
        self.channel = channel
        self.chaincode = chaincode

    @property
    def backend(self) -> Backend:
        """The backend this contract's transactions go through (e.g. to time a Fabric transaction's steps)."""
        return self._backend

    def _proposal(
        self,
        name: str,
        arguments: Sequence[Argument],
        transient: Mapping[str, bytes] | None,
        endorsing_orgs: Sequence[str] = (),
    ) -> Proposal:
        return Proposal(
            self.channel,
            self.chaincode,
            name,
            tuple(_encode(a) for a in arguments),
            dict(transient or {}),
            tuple(endorsing_orgs),
        )

    def evaluate_transaction(self, name: str, *arguments: Argument) -> bytes:
        return self.evaluate(name, arguments=arguments)

    def evaluate(
        self, name: str, *, arguments: Sequence[Argument] = (), transient: Mapping[str, bytes] | None = None
    ) -> bytes:
        return self._backend.evaluate(self._proposal(name, arguments, transient))

    def submit_transaction(self, name: str, *arguments: Argument) -> bytes:
        return self.submit(name, arguments=arguments).result

    def submit(
        self,
        name: str,
        *,
        arguments: Sequence[Argument] = (),
        transient: Mapping[str, bytes] | None = None,
        endorsing_orgs: Sequence[str] = (),
    ) -> SubmitResult:
        """Endorse, order and wait for the commit; raises EndorseError/SubmitError/CommitError."""
        started = time.perf_counter()
        result = self._backend.submit(self._proposal(name, arguments, transient, endorsing_orgs))
        logger.debug(
            "%s committed in block %d (%.1f ms)", name, result.block_number, 1000 * (time.perf_counter() - started)
        )
        return result


class Network:
    def __init__(self, backend: Backend, name: str) -> None:
        self._backend = backend
        self.name = name

    def get_contract(self, chaincode: str) -> Contract:
        return Contract(self._backend, self.name, chaincode)

    def get_chaincode_events(self, chaincode: str, *, start_block: int | None = None) -> EventStream:
        """Events of ``chaincode`` from ``start_block`` (None: from now on), resumable by block number."""
        inner = self._backend.chaincode_events(self.name, chaincode, start_block=start_block)
        return EventStream(iter(inner), getattr(inner, "close", lambda: None))


class Gateway:
    def __init__(self, backend: Backend, identity: Identity) -> None:
        self._backend = backend
        self.identity = identity

    def get_network(self, name: str) -> Network:
        return Network(self._backend, name)

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def connect(
    identity: Identity,
    *,
    signer: Signer,
    ledger_dir: Path | str | None = None,
    endpoint: str | None = None,
    tls_root_cert: bytes | None = None,
    server_name_override: str | None = None,
    backend: Backend | None = None,
    clock: Callable[[], float] | None = None,
) -> Gateway:
    """Connects ``identity`` to a ledger: ``ledger_dir`` (embedded) or ``endpoint`` (a Fabric peer's gateway).

    ``clock`` (seconds since the epoch, default ``time.time``) stamps every proposal: the contract
    reads it as the transaction time, on the embedded ledger and on Fabric alike (Fabric peers
    accept any timestamp), so tests can move past deadlines with a fake clock.
    """
    chosen = [x is not None for x in (ledger_dir, endpoint, backend)]
    if sum(chosen) != 1:
        raise ValueError("pass exactly one of ledger_dir= (embedded ledger), endpoint= (Fabric peer) or backend=")
    if backend is None and ledger_dir is not None:
        from fedledger.sdk.embedded import EmbeddedBackend

        backend = EmbeddedBackend(identity, signer, ledger_dir, clock=clock)
    elif backend is None and endpoint is not None:
        if tls_root_cert is None:
            raise ValueError("a Fabric endpoint needs tls_root_cert= (the peer's TLS CA certificate, PEM)")
        try:
            from fedledger.sdk.fabric.backend import FabricGatewayBackend
        except ImportError as exc:
            raise ImportError(
                f"the Fabric backend needs the 'fabric' extra: pip install 'fedledger[fabric]' ({exc})"
            ) from exc
        backend = FabricGatewayBackend(
            identity,
            signer,
            endpoint=endpoint,
            tls_root_cert=tls_root_cert,
            server_name_override=server_name_override,
            clock=clock,
        )
    assert backend is not None  # exactly one of ledger_dir, endpoint, backend was checked above
    return Gateway(backend, identity)

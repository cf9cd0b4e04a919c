"""The embedded-ledger backend: signs proposals with the caller's identity and runs them on an
EmbeddedLedger in this process (several processes may share one ledger folder)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from fedledger.chaincode.embedded.ledger import EmbeddedLedger, LedgerError
from fedledger.chaincode.embedded.proposal import SignedProposal, build_header
from fedledger.chaincode.errors import ContractError
from fedledger.identity import Identity, Signer
from fedledger.sdk.backend import ChaincodeEvent, Proposal, SubmitResult
from fedledger.sdk.errors import EndorseError, contract_rejection

_LEDGERS: dict[Path, EmbeddedLedger] = {}
_LEDGERS_LOCK = threading.Lock()


def shared_ledger(path: Path | str) -> EmbeddedLedger:
    """One EmbeddedLedger per folder and process, shared by every identity connected to it."""
    key = Path(path).resolve()
    with _LEDGERS_LOCK:
        if key not in _LEDGERS:
            _LEDGERS[key] = EmbeddedLedger.open(key)
        return _LEDGERS[key]


def forget_ledger(path: Path | str) -> None:
    with _LEDGERS_LOCK:
        ledger = _LEDGERS.pop(Path(path).resolve(), None)
    if ledger is not None:
        ledger.close()


class EmbeddedBackend:
    def __init__(
        self, identity: Identity, signer: Signer, ledger_dir: Path | str, *, clock: Callable[[], float] | None = None
    ) -> None:
        self._identity = identity
        self._signer = signer
        self._ledger = shared_ledger(ledger_dir)
        self._clock = clock or time.time
        self._streams: list[_EventIterator] = []

    def _sign(self, proposal: Proposal) -> SignedProposal:
        header = build_header(
            channel=proposal.channel,
            chaincode=proposal.chaincode,
            function=proposal.function,
            arguments=proposal.arguments,
            transient=proposal.transient,
            mspid=self._identity.mspid,
            cert_pem=self._identity.cert_pem,
            timestamp=self._clock(),
        )
        return SignedProposal(header, self._signer(header), dict(proposal.transient))

    def _check_chaincode(self, proposal: Proposal) -> None:
        if proposal.chaincode != self._ledger.contract.name:
            raise EndorseError(
                f"chaincode {proposal.chaincode!r} is not installed; the embedded ledger runs "
                f"{self._ledger.contract.name!r}",
                code="NOT_FOUND",
            )

    def _call(self, proposal: Proposal, run: Callable[[SignedProposal], object]) -> object:
        self._check_chaincode(proposal)
        signed = self._sign(proposal)
        try:
            return run(signed)
        except ContractError as exc:
            error = contract_rejection(str(exc), transaction_id=signed.tx_id, details=("embedded ledger",))
            assert error is not None
            raise error from None
        except LedgerError as exc:
            raise EndorseError(str(exc), code=exc.code, transaction_id=signed.tx_id) from None

    def evaluate(self, proposal: Proposal) -> bytes:
        return self._call(proposal, self._ledger.evaluate)  # type: ignore[return-value]

    def submit(self, proposal: Proposal) -> SubmitResult:
        committed = self._call(proposal, self._ledger.submit)
        return SubmitResult(committed.tx_id, committed.block_number, committed.result)  # type: ignore[attr-defined]

    def chaincode_events(self, channel: str, chaincode: str, *, start_block: int | None = None) -> _EventIterator:
        iterator = _EventIterator(self._ledger, chaincode, start_block)
        self._streams.append(iterator)
        return iterator

    def close(self) -> None:
        for stream in self._streams:
            stream.close()


class _EventIterator:
    """Follows the ledger's blocks; ``close()`` from any thread ends it within one poll interval."""

    def __init__(self, ledger: EmbeddedLedger, chaincode: str, start_block: int | None) -> None:
        self._stop = threading.Event()
        self._events = (
            ChaincodeEvent(e.block_number, e.tx_id, e.chaincode, e.name, e.payload)
            for e in ledger.events(start_block=start_block, stop=self._stop)
            if e.chaincode == chaincode
        )

    def __iter__(self) -> Iterator[ChaincodeEvent]:
        return self

    def __next__(self) -> ChaincodeEvent:
        if self._stop.is_set():
            raise StopIteration
        return next(self._events)

    def close(self) -> None:
        self._stop.set()

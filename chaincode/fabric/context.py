"""The Fabric adapter of the ledger-context port, over a fabric-chaincode-python stub.

The contract is synchronous; the stub is asyncio. The contract runs in a worker thread and every
ledger call is sent to the server's event loop with ``run_coroutine_threadsafe``, so the loop
keeps reading the peer's stream (and other transactions' replies) meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from fabric_protos.common import policies_pb2
from fabric_protos.msp import msp_principal_pb2

from fedledger.chaincode.context import Creator, HistoryEntry, normalize_endorsers
from fedledger.chaincode.fabric.compat import VALIDATION_PARAMETER, transient_map
from fedledger.chaincode.keys import composite_key

T = TypeVar("T")

LEDGER_CALL_TIMEOUT_S = 120.0


class FabricLedgerContext:
    """One transaction's view of the ledger (implements ``fedledger.chaincode.context.LedgerContext``).

    Writes go to the peer at once; the peer buffers them in the transaction simulation, so reads
    never see the transaction's own writes, exactly as the port requires.
    """

    def __init__(self, stub: Any, loop: asyncio.AbstractEventLoop, clock: Callable[[], float] = time.time) -> None:
        """``clock``: this endorsing peer's (its chaincode server's) own time, to bound the proposal's."""
        self._stub = stub
        self._clock = clock
        self._loop = loop
        self._handler = stub.client
        self._channel = stub.channel_id
        self._tx_id = stub.tx_id
        self._event: tuple[str, bytes] | None = None
        self._transient: Mapping[str, bytes] | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(LEDGER_CALL_TIMEOUT_S)

    # --- state ---------------------------------------------------------------------------------

    def get_state(self, key: str) -> bytes | None:
        reply = self._run(self._handler.handle_get_state("", key, self._channel, self._tx_id))
        return reply or None

    def put_state(self, key: str, value: bytes) -> None:
        if not key:
            raise ValueError("key must not be empty")
        self._run(self._handler.handle_put_state("", key, bytes(value), self._channel, self._tx_id))

    def del_state(self, key: str) -> None:
        self._run(self._handler.handle_delete_state("", key, self._channel, self._tx_id))

    def get_state_by_partial_composite_key(
        self, object_type: str, attributes: list[str]
    ) -> Iterator[tuple[str, bytes]]:
        prefix = composite_key(object_type, list(attributes))

        async def collect() -> list[tuple[str, bytes]]:
            iterator = await self._stub.get_state_by_range(prefix, prefix + "\U0010ffff")
            return [(kv.key, kv.value) async for kv in iterator]

        return iter(self._run(collect()))

    def get_history_for_key(self, key: str) -> Iterator[HistoryEntry]:
        async def collect() -> list[HistoryEntry]:
            iterator = await self._stub.get_history_for_key(key)
            return [
                HistoryEntry(
                    tx_id=mod.tx_id,
                    timestamp=mod.timestamp.seconds + mod.timestamp.nanos / 1e9,
                    value=mod.value,
                    is_delete=mod.is_delete,
                )
                async for mod in iterator
            ]

        # The peer returns newest first; the port promises oldest first.
        return iter(list(reversed(self._run(collect()))))

    # --- transaction metadata -----------------------------------------------------------------

    def get_creator(self) -> Creator:
        creator = self._stub.get_creator() or {}
        return Creator(mspid=creator.get("mspid", ""), cert_pem=bytes(creator.get("idBytes", b"")))

    def get_tx_id(self) -> str:
        return self._tx_id

    def get_tx_timestamp(self) -> float:
        ts = self._stub.get_tx_timestamp()
        if ts is None:
            raise RuntimeError("the proposal carries no timestamp")
        return ts.seconds + ts.nanos / 1e9

    def clock_skew(self) -> float:
        return self.get_tx_timestamp() - self._clock()

    def get_transient(self) -> Mapping[str, bytes]:
        if self._transient is None:
            self._transient = transient_map(self._stub)
        return self._transient

    def set_event(self, name: str, payload: bytes) -> None:
        if not name:
            raise ValueError("event name must not be empty")
        self._event = (name, bytes(payload))

    # --- state-based endorsement ---------------------------------------------------------------

    def set_key_endorsers(self, key: str, mspids: Sequence[str]) -> None:
        policy = peer_policy(normalize_endorsers(key, mspids))
        self._run(
            self._handler.handle_put_state_metadata("", key, VALIDATION_PARAMETER, policy, self._channel, self._tx_id)
        )

    def get_key_endorsers(self, key: str) -> list[str] | None:
        metadata = self._run(self._handler.handle_get_state_metadata("", key, self._channel, self._tx_id))
        policy = metadata.get(VALIDATION_PARAMETER, b"")
        return (policy_mspids(policy) or None) if policy else None

    @property
    def event(self) -> tuple[str, bytes] | None:
        """The event to send with the COMPLETED message, if the transaction set one."""
        return self._event


def peer_policy(mspids: Sequence[str]) -> bytes:
    """A key's validation parameter: a signature by a peer of any one of ``mspids`` (empty: none, so the chaincode
    policy applies again), as a serialized ``common.SignaturePolicyEnvelope``."""
    if not mspids:
        return b""
    principals = [
        msp_principal_pb2.MSPPrincipal(
            principal_classification=msp_principal_pb2.MSPPrincipal.ROLE,
            principal=msp_principal_pb2.MSPRole(
                msp_identifier=mspid, role=msp_principal_pb2.MSPRole.PEER
            ).SerializeToString(),
        )
        for mspid in mspids
    ]
    rule = policies_pb2.SignaturePolicy(
        n_out_of=policies_pb2.SignaturePolicy.NOutOf(
            n=1, rules=[policies_pb2.SignaturePolicy(signed_by=i) for i in range(len(principals))]
        )
    )
    return policies_pb2.SignaturePolicyEnvelope(version=0, rule=rule, identities=principals).SerializeToString()


def policy_mspids(policy: bytes) -> list[str]:
    """The MSP IDs named by a validation parameter's role principals, sorted."""
    envelope = policies_pb2.SignaturePolicyEnvelope.FromString(policy)
    mspids = set()
    for principal in envelope.identities:
        if principal.principal_classification == msp_principal_pb2.MSPPrincipal.ROLE:
            mspids.add(msp_principal_pb2.MSPRole.FromString(principal.principal).msp_identifier)
    return sorted(mspids)

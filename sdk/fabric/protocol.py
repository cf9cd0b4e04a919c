"""Pure builders and parsers for the Fabric Gateway messages; no network, no signing key.

Kept apart from the gRPC calls so that what goes on the wire (transaction id, headers, the
proposal a peer signs over) can be tested byte by byte without a peer. The message layout is
Fabric's: a ``SignedProposal`` wraps a ``Proposal`` whose header names the channel, the
chaincode and the creator, and whose payload is the invocation with its transient map (which
endorsers see, but which never enters the transaction that is ordered).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import (
    chaincode_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from google.protobuf import timestamp_pb2

from fedledger.identity import Identity, Signer

__all__ = [
    "NONCE_BYTES",
    "PreparedProposal",
    "TransactionContext",
    "chaincode_events_request",
    "commit_status_request",
    "new_proposal",
    "new_transaction_context",
    "parse_envelope",
    "serialize_identity",
    "sign_envelope",
    "transaction_id",
    "validation_code_name",
]

NONCE_BYTES = 24
"""Nonce length used by the Fabric SDKs; any length works, the peer only hashes it."""


def serialize_identity(identity: Identity) -> bytes:
    """The ``creator`` bytes Fabric puts in every header: MSP ID + PEM certificate."""
    return identities_pb2.SerializedIdentity(mspid=identity.mspid, id_bytes=identity.cert_pem).SerializeToString()


def transaction_id(nonce: bytes, creator: bytes) -> str:
    """Fabric's transaction id: hex(SHA-256(nonce ‖ creator)); peers recompute and compare it."""
    return hashlib.sha256(nonce + creator).hexdigest()


@dataclass(frozen=True)
class TransactionContext:
    """The nonce, creator and the transaction id derived from them, for one proposal."""

    transaction_id: str
    nonce: bytes
    creator: bytes


def new_transaction_context(identity: Identity, nonce: bytes | None = None) -> TransactionContext:
    """A fresh context; a random nonce makes every proposal (and each retry) a new transaction."""
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    creator = serialize_identity(identity)
    return TransactionContext(transaction_id(nonce, creator), nonce, creator)


@dataclass(frozen=True)
class PreparedProposal:
    """An unsigned proposal: sign ``proposal_bytes`` and put the result in a SignedProposal."""

    transaction_id: str
    channel: str
    proposal_bytes: bytes

    def signed(self, signer: Signer) -> proposal_pb2.SignedProposal:
        """The proposal signed by ``signer`` (peers verify it against the creator)."""
        return proposal_pb2.SignedProposal(proposal_bytes=self.proposal_bytes, signature=signer(self.proposal_bytes))


def new_proposal(
    context: TransactionContext,
    *,
    channel: str,
    chaincode: str,
    function: str,
    arguments: Sequence[bytes] = (),
    transient: Mapping[str, bytes] | None = None,
    timestamp_ns: int | None = None,
) -> PreparedProposal:
    """Builds the proposal for ``function(*arguments)`` on ``chaincode``.

    The timestamp is the client's clock; the peer accepts it within its configured skew and
    it becomes the transaction timestamp the contract reads (``get_tx_timestamp``).
    """
    timestamp = timestamp_pb2.Timestamp()
    if timestamp_ns is None:
        timestamp.GetCurrentTime()
    else:
        timestamp.FromNanoseconds(timestamp_ns)
    extension = proposal_pb2.ChaincodeHeaderExtension(chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode))
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.HeaderType.ENDORSER_TRANSACTION,
        timestamp=timestamp,
        channel_id=channel,
        tx_id=context.transaction_id,
        epoch=0,
        extension=extension.SerializeToString(),
    )
    signature_header = common_pb2.SignatureHeader(creator=context.creator, nonce=context.nonce)
    header = common_pb2.Header(
        channel_header=channel_header.SerializeToString(),
        signature_header=signature_header.SerializeToString(),
    )
    invocation = chaincode_pb2.ChaincodeInvocationSpec(
        chaincode_spec=chaincode_pb2.ChaincodeSpec(
            chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode),
            input=chaincode_pb2.ChaincodeInput(args=[function.encode(), *map(bytes, arguments)]),
        )
    )
    payload = proposal_pb2.ChaincodeProposalPayload(
        input=invocation.SerializeToString(), TransientMap=dict(transient or {})
    )
    proposal = proposal_pb2.Proposal(header=header.SerializeToString(), payload=payload.SerializeToString())
    return PreparedProposal(context.transaction_id, channel, proposal.SerializeToString())


@dataclass(frozen=True)
class EnvelopeInfo:
    """What the client needs from a prepared transaction envelope."""

    channel: str
    transaction_id: str
    result: bytes


def parse_envelope(envelope: common_pb2.Envelope) -> EnvelopeInfo:
    """Reads channel, tx id and the chaincode's return value from a prepared transaction.

    The gateway returns the endorsed transaction unsigned; checking that it carries our own
    transaction id before signing it is cheap protection against signing something else.
    """
    payload = common_pb2.Payload.FromString(envelope.payload)
    channel_header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    transaction = transaction_pb2.Transaction.FromString(payload.data)
    for action in transaction.actions:
        action_payload = transaction_pb2.ChaincodeActionPayload.FromString(action.payload)
        response_payload = proposal_response_pb2.ProposalResponsePayload.FromString(
            action_payload.action.proposal_response_payload
        )
        chaincode_action = proposal_pb2.ChaincodeAction.FromString(response_payload.extension)
        return EnvelopeInfo(channel_header.channel_id, channel_header.tx_id, chaincode_action.response.payload)
    raise ValueError("The prepared transaction holds no chaincode action.")


def sign_envelope(envelope: common_pb2.Envelope, signer: Signer) -> common_pb2.Envelope:
    """The envelope with the creator's signature over its payload (what the orderer checks)."""
    return common_pb2.Envelope(payload=envelope.payload, signature=signer(envelope.payload))


def commit_status_request(
    *, channel: str, transaction_id: str, creator: bytes, signer: Signer
) -> gateway_pb2.SignedCommitStatusRequest:
    """A signed CommitStatus request: the gateway only tells a member of the channel."""
    request = gateway_pb2.CommitStatusRequest(
        channel_id=channel, transaction_id=transaction_id, identity=creator
    ).SerializeToString()
    return gateway_pb2.SignedCommitStatusRequest(request=request, signature=signer(request))


def chaincode_events_request(
    *,
    channel: str,
    chaincode: str,
    creator: bytes,
    signer: Signer,
    start_block: int | None = None,
    after_transaction_id: str = "",
) -> gateway_pb2.SignedChaincodeEventsRequest:
    """A signed ChaincodeEvents request starting at ``start_block`` (None: next commit).

    ``after_transaction_id`` skips the events of that block up to and including that
    transaction, which is how a reader resumes exactly after the last event it processed.
    """
    if start_block is None:
        position = ab_pb2.SeekPosition(next_commit=ab_pb2.SeekNextCommit())
    else:
        if start_block < 0:
            raise ValueError(f"start_block must be >= 0. Got {start_block} instead.")
        position = ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=start_block))
    request = gateway_pb2.ChaincodeEventsRequest(
        channel_id=channel,
        chaincode_id=chaincode,
        identity=creator,
        start_position=position,
        after_transaction_id=after_transaction_id,
    ).SerializeToString()
    return gateway_pb2.SignedChaincodeEventsRequest(request=request, signature=signer(request))


def validation_code_name(code: int) -> str:
    """Fabric's name for a validation code (``MVCC_READ_CONFLICT``), or the number if unknown."""
    try:
        return transaction_pb2.TxValidationCode.Name(code)
    except ValueError:
        return f"UNKNOWN_VALIDATION_CODE_{code}"

"""What goes on the wire, byte by byte, without a peer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2, proposal_response_pb2, transaction_pb2

from fedledger.identity import Identity, load_msp_identity, verify_signature
from fedledger.sdk.fabric import protocol

from .certs import make_msp

IDENTITY = Identity("Org1MSP", b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")


@pytest.fixture
def signing(tmp_path: Path):
    make_msp(tmp_path / "msp")
    return load_msp_identity(tmp_path / "msp", "Org1MSP")


def test_serialize_identity_is_msp_serialized_identity():
    creator = protocol.serialize_identity(IDENTITY)
    parsed = identities_pb2.SerializedIdentity.FromString(creator)
    assert (parsed.mspid, parsed.id_bytes) == ("Org1MSP", IDENTITY.cert_pem)


def test_transaction_id_is_sha256_of_nonce_then_creator():
    # Prepare
    nonce = bytes(range(24))
    creator = protocol.serialize_identity(IDENTITY)
    # Execute
    tx_id = protocol.transaction_id(nonce, creator)
    # Assert: the order matters (nonce first), hex lower case, 64 characters
    assert tx_id == hashlib.sha256(nonce + creator).hexdigest()
    assert tx_id != hashlib.sha256(creator + nonce).hexdigest()
    assert len(tx_id) == 64 and tx_id == tx_id.lower()
    # A fixed vector, so that a change of serialisation is noticed.
    assert protocol.transaction_id(b"\x00" * 24, b"creator") == hashlib.sha256(b"\x00" * 24 + b"creator").hexdigest()


def test_fresh_contexts_never_repeat():
    contexts = [protocol.new_transaction_context(IDENTITY) for _ in range(100)]
    assert len({c.transaction_id for c in contexts}) == 100
    assert all(len(c.nonce) == protocol.NONCE_BYTES for c in contexts)
    assert all(c.transaction_id == protocol.transaction_id(c.nonce, c.creator) for c in contexts)


def test_proposal_fields():
    # Prepare
    context = protocol.new_transaction_context(IDENTITY, nonce=b"n" * 24)
    # Execute
    prepared = protocol.new_proposal(
        context,
        channel="mychannel",
        chaincode="fedledger",
        function="SubmitUpdate",
        arguments=[b"round-1", b"\x00\xff"],
        transient={"update": b"\x01" * 1000},
        timestamp_ns=1_700_000_000_123_456_789,
    )
    # Assert
    proposal = proposal_pb2.Proposal.FromString(prepared.proposal_bytes)
    header = common_pb2.Header.FromString(proposal.header)
    channel_header = common_pb2.ChannelHeader.FromString(header.channel_header)
    signature_header = common_pb2.SignatureHeader.FromString(header.signature_header)
    extension = proposal_pb2.ChaincodeHeaderExtension.FromString(channel_header.extension)
    payload = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
    spec = chaincode_pb2.ChaincodeInvocationSpec.FromString(payload.input).chaincode_spec

    assert prepared.transaction_id == context.transaction_id
    assert channel_header.type == common_pb2.HeaderType.ENDORSER_TRANSACTION
    assert channel_header.channel_id == "mychannel"
    assert channel_header.tx_id == context.transaction_id
    assert channel_header.epoch == 0
    assert channel_header.timestamp.ToNanoseconds() == 1_700_000_000_123_456_789
    assert extension.chaincode_id.name == "fedledger"
    assert signature_header.creator == context.creator
    assert signature_header.nonce == b"n" * 24
    assert spec.chaincode_id.name == "fedledger"
    assert list(spec.input.args) == [b"SubmitUpdate", b"round-1", b"\x00\xff"]
    assert dict(payload.TransientMap) == {"update": b"\x01" * 1000}


def test_signed_proposal_verifies(signing):
    identity, signer = signing
    prepared = protocol.new_proposal(
        protocol.new_transaction_context(identity), channel="c", chaincode="cc", function="F"
    )
    signed = prepared.signed(signer)
    assert signed.proposal_bytes == prepared.proposal_bytes
    assert verify_signature(identity, signed.proposal_bytes, signed.signature)


def _envelope(channel: str, tx_id: str, result: bytes) -> common_pb2.Envelope:
    action = proposal_pb2.ChaincodeAction(response=proposal_response_pb2.Response(status=200, payload=result))
    rpp = proposal_response_pb2.ProposalResponsePayload(extension=action.SerializeToString())
    cap = transaction_pb2.ChaincodeActionPayload(
        action=transaction_pb2.ChaincodeEndorsedAction(proposal_response_payload=rpp.SerializeToString())
    )
    tx = transaction_pb2.Transaction(actions=[transaction_pb2.TransactionAction(payload=cap.SerializeToString())])
    header = common_pb2.Header(
        channel_header=common_pb2.ChannelHeader(channel_id=channel, tx_id=tx_id).SerializeToString()
    )
    return common_pb2.Envelope(
        payload=common_pb2.Payload(header=header, data=tx.SerializeToString()).SerializeToString()
    )


def test_parse_envelope_and_sign(signing):
    identity, signer = signing
    envelope = _envelope("mychannel", "abc", b'{"ok": true}')
    info = protocol.parse_envelope(envelope)
    assert (info.channel, info.transaction_id, info.result) == ("mychannel", "abc", b'{"ok": true}')
    signed = protocol.sign_envelope(envelope, signer)
    assert signed.payload == envelope.payload
    assert verify_signature(identity, signed.payload, signed.signature)


def test_parse_envelope_without_action_is_an_error():
    payload = common_pb2.Payload(header=common_pb2.Header(), data=b"")
    with pytest.raises(ValueError, match="no chaincode action"):
        protocol.parse_envelope(common_pb2.Envelope(payload=payload.SerializeToString()))


def test_commit_status_request_is_signed(signing):
    identity, signer = signing
    creator = protocol.serialize_identity(identity)
    signed = protocol.commit_status_request(channel="ch", transaction_id="t1", creator=creator, signer=signer)
    inner = gateway_pb2.CommitStatusRequest.FromString(signed.request)
    assert (inner.channel_id, inner.transaction_id, inner.identity) == ("ch", "t1", creator)
    assert verify_signature(identity, signed.request, signed.signature)


@pytest.mark.parametrize(
    ("start_block", "after", "kind", "number"),
    [(None, "", "next_commit", None), (0, "", "specified", 0), (42, "tx9", "specified", 42)],
)
def test_chaincode_events_request_positions(signing, start_block, after, kind, number):
    identity, signer = signing
    creator = protocol.serialize_identity(identity)
    signed = protocol.chaincode_events_request(
        channel="ch",
        chaincode="cc",
        creator=creator,
        signer=signer,
        start_block=start_block,
        after_transaction_id=after,
    )
    inner = gateway_pb2.ChaincodeEventsRequest.FromString(signed.request)
    assert inner.start_position.WhichOneof("Type") == kind
    if number is not None:
        assert inner.start_position.specified.number == number
    assert (inner.channel_id, inner.chaincode_id, inner.after_transaction_id) == ("ch", "cc", after)
    assert verify_signature(identity, signed.request, signed.signature)


def test_chaincode_events_request_rejects_negative_block(signing):
    _, signer = signing
    with pytest.raises(ValueError, match="start_block must be >= 0"):
        protocol.chaincode_events_request(channel="c", chaincode="cc", creator=b"", signer=signer, start_block=-1)


def test_validation_code_names():
    assert protocol.validation_code_name(0) == "VALID"
    assert protocol.validation_code_name(11) == "MVCC_READ_CONFLICT"
    assert protocol.validation_code_name(12) == "PHANTOM_READ_CONFLICT"
    assert protocol.validation_code_name(9999) == "UNKNOWN_VALIDATION_CODE_9999"

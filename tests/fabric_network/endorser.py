"""A minimal signed-proposal client for the peer's Endorser service, for the network tests.

The ``peer`` CLI takes transient data on its command line, where Linux caps one argument at
128 KiB; this client sends proposals of any size so the tests can push 50 MB+ through the peer
and the chaincode server. Endorse only: nothing is ordered or committed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from fabric_protos.common import common_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import chaincode_pb2, peer_pb2_grpc, proposal_pb2, proposal_response_pb2

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True)
class Identity:
    mspid: str
    cert_pem: bytes
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def from_msp_dir(cls, mspid: str, msp_dir: str | Path) -> Identity:
        msp = Path(msp_dir)
        cert = next((msp / "signcerts").iterdir()).read_bytes()
        key = serialization.load_pem_private_key(next((msp / "keystore").iterdir()).read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cls(mspid, cert, key)

    def serialized(self) -> bytes:
        return identities_pb2.SerializedIdentity(mspid=self.mspid, id_bytes=self.cert_pem).SerializeToString()

    def sign(self, message: bytes) -> bytes:
        r, s = decode_dss_signature(self.key.sign(message, ec.ECDSA(hashes.SHA256())))
        if s > _P256_ORDER // 2:  # Fabric rejects high-S signatures
            s = _P256_ORDER - s
        return encode_dss_signature(r, s)


def signed_proposal(
    identity: Identity, channel: str, chaincode: str, args: list[str], transient: dict[str, bytes]
) -> tuple[str, proposal_pb2.SignedProposal]:
    nonce = os.urandom(24)
    creator = identity.serialized()
    tx_id = hashlib.sha256(nonce + creator).hexdigest()
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.ENDORSER_TRANSACTION,
        channel_id=channel,
        tx_id=tx_id,
        extension=proposal_pb2.ChaincodeHeaderExtension(
            chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode)
        ).SerializeToString(),
    )
    channel_header.timestamp.GetCurrentTime()
    header = common_pb2.Header(
        channel_header=channel_header.SerializeToString(),
        signature_header=common_pb2.SignatureHeader(creator=creator, nonce=nonce).SerializeToString(),
    )
    spec = chaincode_pb2.ChaincodeInvocationSpec(
        chaincode_spec=chaincode_pb2.ChaincodeSpec(
            type=chaincode_pb2.ChaincodeSpec.GOLANG,
            chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode),
            input=chaincode_pb2.ChaincodeInput(args=[a.encode() for a in args]),
        )
    )
    payload = proposal_pb2.ChaincodeProposalPayload(input=spec.SerializeToString(), TransientMap=transient)
    proposal = proposal_pb2.Proposal(header=header.SerializeToString(), payload=payload.SerializeToString())
    proposal_bytes = proposal.SerializeToString()
    return tx_id, proposal_pb2.SignedProposal(proposal_bytes=proposal_bytes, signature=identity.sign(proposal_bytes))


def endorse(
    endpoint: str,
    tls_root_cert: str | Path,
    host_override: str,
    identity: Identity,
    channel: str,
    chaincode: str,
    args: list[str],
    transient: dict[str, bytes] | None = None,
    *,
    max_message_bytes: int = 256 * 1024 * 1024,
    timeout: float = 120,
) -> proposal_response_pb2.ProposalResponse:
    _, proposal = signed_proposal(identity, channel, chaincode, args, transient or {})
    return process(
        endpoint, tls_root_cert, host_override, proposal, max_message_bytes=max_message_bytes, timeout=timeout
    )


def process(
    endpoint: str,
    tls_root_cert: str | Path,
    host_override: str,
    proposal: proposal_pb2.SignedProposal,
    *,
    max_message_bytes: int = 256 * 1024 * 1024,
    timeout: float = 120,
) -> proposal_response_pb2.ProposalResponse:
    """Sends one signed proposal to one peer's Endorser service."""
    credentials = grpc.ssl_channel_credentials(root_certificates=Path(tls_root_cert).read_bytes())
    options = [
        ("grpc.ssl_target_name_override", host_override),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]
    with grpc.secure_channel(endpoint, credentials, options=options) as channel_:
        return peer_pb2_grpc.EndorserStub(channel_).ProcessProposal(proposal, timeout=timeout)

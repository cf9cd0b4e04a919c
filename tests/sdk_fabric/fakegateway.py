"""An in-process Gateway service with scripted answers, verifying signatures like a peer."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from concurrent import futures
from typing import NoReturn

import grpc
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)

from fedledger.identity import Identity, verify_signature
from fedledger.sdk.fabric.grpcerrors import _Status


def _abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    details: Sequence[tuple[str, str, str]] = (),
) -> NoReturn:
    status = _Status(code=code.value[0], message=message)
    for address, mspid, text in details:
        packed = status.details.add()
        packed.Pack(gateway_pb2.ErrorDetail(address=address, msp_id=mspid, message=text))
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(code, message)


def _check_signature(context: grpc.ServicerContext, creator: bytes, message: bytes, signature: bytes) -> None:
    identity = identities_pb2.SerializedIdentity.FromString(creator)
    if not verify_signature(Identity(identity.mspid, identity.id_bytes), message, signature):
        _abort(context, grpc.StatusCode.PERMISSION_DENIED, "signature validation failed")


class FakeGateway(gateway_pb2_grpc.GatewayServicer):
    """Answers like a gateway peer for scripted chaincode functions.

    ``Echo(x)`` returns x; ``Transient(key)`` returns the transient value; ``Refuse(msg)`` fails
    endorsement with the chaincode message ``msg``; ``Conflict(n)`` commits MVCC_READ_CONFLICT
    for its first n transactions, then VALID. Every request's signature is verified.
    """

    def __init__(self) -> None:
        self.submitted: list[common_pb2.Envelope] = []
        self.calls: Counter[str] = Counter()
        self.block = 10
        self.status: dict[str, tuple[int, int]] = {}
        self.events: list[tuple[int, str, str, bytes]] = []
        self.event_requests: list[gateway_pb2.ChaincodeEventsRequest] = []
        self.lock = threading.Lock()

    def _run(self, signed: proposal_pb2.SignedProposal, context: grpc.ServicerContext):
        proposal = proposal_pb2.Proposal.FromString(signed.proposal_bytes)
        header = common_pb2.Header.FromString(proposal.header)
        signature_header = common_pb2.SignatureHeader.FromString(header.signature_header)
        _check_signature(context, signature_header.creator, signed.proposal_bytes, signed.signature)
        payload = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
        spec = chaincode_pb2.ChaincodeInvocationSpec.FromString(payload.input).chaincode_spec
        function, *args = spec.input.args
        function = function.decode()
        with self.lock:
            self.calls[function] += 1
        if function == "Echo":
            return header, function, args[0]
        if function == "Transient":
            return header, function, payload.TransientMap[args[0].decode()]
        if function in ("Conflict", "Invalid"):
            return header, function, b"ok"
        if function == "Refuse":
            _abort(
                context,
                grpc.StatusCode.ABORTED,
                "failed to endorse transaction, see attached details for more info",
                [
                    ("peer0.org1.example.com:7051", "Org1MSP", "chaincode response 500, " + args[0].decode()),
                    ("peer0.org2.example.com:9051", "Org2MSP", "chaincode response 500, " + args[0].decode()),
                ],
            )
        _abort(context, grpc.StatusCode.UNIMPLEMENTED, f"no function {function}")

    def Evaluate(self, request, context):
        _, _, result = self._run(request.proposed_transaction, context)
        return gateway_pb2.EvaluateResponse(result=proposal_response_pb2.Response(status=200, payload=result))

    def Endorse(self, request, context):
        header, function, result = self._run(request.proposed_transaction, context)
        action = proposal_pb2.ChaincodeAction(response=proposal_response_pb2.Response(status=200, payload=result))
        response_payload = proposal_response_pb2.ProposalResponsePayload(extension=action.SerializeToString())
        action_payload = transaction_pb2.ChaincodeActionPayload(
            action=transaction_pb2.ChaincodeEndorsedAction(
                proposal_response_payload=response_payload.SerializeToString()
            )
        )
        transaction = transaction_pb2.Transaction(
            actions=[
                transaction_pb2.TransactionAction(
                    header=header.signature_header, payload=action_payload.SerializeToString()
                )
            ]
        )
        payload = common_pb2.Payload(header=header, data=transaction.SerializeToString())
        with self.lock:
            conflicts_left = self.calls[function] <= self.conflicts if function == "Conflict" else False
            code = (
                transaction_pb2.TxValidationCode.MVCC_READ_CONFLICT
                if conflicts_left
                else (
                    transaction_pb2.TxValidationCode.ENDORSEMENT_POLICY_FAILURE
                    if function == "Invalid"
                    else transaction_pb2.TxValidationCode.VALID
                )
            )
            self.block += 1
            self.status[request.transaction_id] = (code, self.block)
        return gateway_pb2.EndorseResponse(
            prepared_transaction=common_pb2.Envelope(payload=payload.SerializeToString())
        )

    conflicts = 2

    def Submit(self, request, context):
        envelope = request.prepared_transaction
        payload = common_pb2.Payload.FromString(envelope.payload)
        creator = common_pb2.SignatureHeader.FromString(payload.header.signature_header).creator
        _check_signature(context, creator, envelope.payload, envelope.signature)
        with self.lock:
            self.submitted.append(envelope)
        return gateway_pb2.SubmitResponse()

    def CommitStatus(self, request, context):
        inner = gateway_pb2.CommitStatusRequest.FromString(request.request)
        _check_signature(context, inner.identity, request.request, request.signature)
        code, block = self.status[inner.transaction_id]
        return gateway_pb2.CommitStatusResponse(result=code, block_number=block)

    def ChaincodeEvents(self, request, context):
        inner = gateway_pb2.ChaincodeEventsRequest.FromString(request.request)
        _check_signature(context, inner.identity, request.request, request.signature)
        self.event_requests.append(inner)
        start = inner.start_position.specified.number if inner.start_position.HasField("specified") else None
        skipping = bool(inner.after_transaction_id)
        for block, tx_id, name, payload in self.events:
            if start is None or block < start:
                continue
            if skipping and block == start:  # resume strictly after the named transaction
                skipping = tx_id != inner.after_transaction_id
                continue
            yield gateway_pb2.ChaincodeEventsResponse(
                block_number=block,
                events=[
                    chaincode_event_pb2.ChaincodeEvent(
                        chaincode_id=inner.chaincode_id, tx_id=tx_id, event_name=name, payload=payload
                    )
                ],
            )
        while context.is_active():  # like a peer: wait for more blocks until the client cancels
            threading.Event().wait(0.05)


def start_fake_gateway() -> tuple[grpc.Server, FakeGateway, int]:
    """A plaintext gRPC server on 127.0.0.1 with the fake gateway; returns server, servicer, port."""
    limit = 100 * 1024 * 1024  # like a peer (core.yaml maxRecvMsgSize)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
    )
    servicer = FakeGateway()
    gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, servicer, port

"""Maps gRPC failures of the Gateway service to the SDK's typed errors.

The gateway reports what each endorser or orderer said as ``gateway.ErrorDetail`` messages
packed in the standard ``google.rpc.Status`` trailer (``grpc-status-details-bin``). Reading it
needs only the Status message shape, so it is declared here in a private descriptor pool rather
than pulling in googleapis-common-protos (whose current releases require protobuf 6, while
hyperledger-fabric-protos requires protobuf < 6).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from fabric_protos.gateway import gateway_pb2
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

from fedledger.sdk.errors import (
    EndorseError,
    GatewayError,
    contract_rejection,
)

__all__ = ["NEXT_STEP", "ErrorDetail", "error_details", "to_gateway_error"]

logger = logging.getLogger(__name__)

_DETAILS_KEY = "grpc-status-details-bin"


def _status_class() -> type:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="fedledger/google_rpc_status.proto",
        package="google.rpc",
        syntax="proto3",
        dependency=["google/protobuf/any.proto"],
    )
    message = file.message_type.add(name="Status")
    field = descriptor_pb2.FieldDescriptorProto
    message.field.add(name="code", number=1, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL)
    message.field.add(name="message", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    message.field.add(
        name="details",
        number=3,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_REPEATED,
        type_name=".google.protobuf.Any",
    )
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))


_Status = _status_class()


@dataclass(frozen=True)
class ErrorDetail:
    """What one remote party (endorsing peer, orderer) answered."""

    address: str
    mspid: str
    message: str

    def __str__(self) -> str:
        return f"{self.address} ({self.mspid}): {self.message}"


def error_details(error: grpc.RpcError) -> tuple[ErrorDetail, ...]:
    """The ``gateway.ErrorDetail`` entries attached to a failed call, in the gateway's order."""
    trailers = error.trailing_metadata() if isinstance(error, grpc.Call) else None
    details: list[ErrorDetail] = []
    for key, value in trailers or ():  # pyright: ignore[reportGeneralTypeIssues]  # (key, value) tuples at run time
        if key != _DETAILS_KEY:
            continue
        try:
            status = _Status.FromString(value)
        except Exception:  # a malformed trailer must not hide the original error
            logger.warning("Unreadable %s trailer ignored", _DETAILS_KEY)
            continue
        for packed in status.details:
            if packed.type_url.endswith("/" + gateway_pb2.ErrorDetail.DESCRIPTOR.full_name):
                detail = gateway_pb2.ErrorDetail.FromString(packed.value)
                details.append(ErrorDetail(detail.address, detail.msp_id, detail.message))
    return tuple(details)


def _status(error: grpc.RpcError) -> tuple[str, str]:
    if isinstance(error, grpc.Call):
        code = error.code()
        return (code.name if code is not None else "UNKNOWN"), (error.details() or "")
    return "UNKNOWN", str(error)


NEXT_STEP = {
    "UNAVAILABLE": "check which peers and orderers are down (`make network-status`; `make network-up` restarts "
    "them), then retry",
    "DEADLINE_EXCEEDED": "the network did not answer in time: check `make network-status`, then retry "
    "(a transaction is never applied twice)",
    "PERMISSION_DENIED": "check that the identity's MSP ID and certificate belong to a member of the channel",
    "UNAUTHENTICATED": "check that the identity's MSP ID and certificate belong to a member of the channel",
    "NOT_FOUND": "check the channel and chaincode names (`make network-status` shows them)",
    "ABORTED": "the endorsing peers failed or disagreed (see the details): retry, and check their chaincode "
    "servers (`make network-status`) if it persists",
}
"""What to do next, by gRPC status, for failures that are not the contract's own refusals."""


def to_gateway_error(
    error: grpc.RpcError, *, step: type[GatewayError], transaction_id: str, gateways: Sequence[str] = ()
) -> GatewayError:
    """The typed error for a failed gRPC call of ``step`` (EndorseError, SubmitError...).

    For an endorsement refused by the contract (its message carries ``[CODE] ...``), the
    result is also an instance of the contract's own error class, with the contract's words.
    Otherwise the first line says what failed where and what to do next; ``gateways`` are the
    gateway peers that were tried.
    """
    code, message = _status(error)
    details = error_details(error)
    detail_texts = tuple(str(detail) for detail in details)
    if issubclass(step, EndorseError):
        for candidate in [detail.message for detail in details] + [message]:
            rejection = contract_rejection(candidate, transaction_id=transaction_id, details=detail_texts)
            if rejection is not None:
                return rejection
    where = f" (gateway {', '.join(gateways)})" if gateways else ""
    cause = " ".join(message.split()) or "no detail"
    hint = NEXT_STEP.get(code)
    text = f"{step.step} failed{where}: {cause} [{code}]" + (f"; {hint}" if hint else "")
    return step(text, code=code, transaction_id=transaction_id, details=detail_texts)

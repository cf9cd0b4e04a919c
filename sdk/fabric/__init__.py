"""Fabric Gateway backend of the SDK (needs the ``fabric`` extra: grpcio + hyperledger-fabric-protos).

fabric-sdk-py (``hfc``) is not used: 1.0.0 does not install on Python 3.11 (pysha3 fails to
build) and targets Fabric 1.4, which had no Gateway service. This package speaks the Gateway
gRPC protocol of Fabric 2.4+ directly, following fabric-gateway's ``pkg/client`` design.
"""

try:
    import fabric_protos  # noqa: F401
    import grpc  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "The Fabric backend needs grpcio and hyperledger-fabric-protos: pip install 'fedledger[fabric]'"
    ) from error

from fedledger.sdk.fabric.backend import ChaincodeEventStream, EndorsedTransaction, FabricGatewayBackend
from fedledger.sdk.fabric.profile import (
    NetworkProfile,
    OrgConnection,
    add_network_arguments,
    backend_from_args,
    load_connection_profile,
    load_network_dir,
)

__all__ = [
    "ChaincodeEventStream",
    "EndorsedTransaction",
    "FabricGatewayBackend",
    "NetworkProfile",
    "OrgConnection",
    "add_network_arguments",
    "backend_from_args",
    "load_connection_profile",
    "load_network_dir",
]

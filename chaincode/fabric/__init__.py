"""Fabric adapter: serves FedLedgerContract as chaincode-as-a-service over fabric-chaincode-python.

``python -m fedledger.chaincode.fabric`` with CHAINCODE_ID and CHAINCODE_SERVER_ADDRESS starts it.
"""

from fedledger.chaincode.fabric.context import FabricLedgerContext
from fedledger.chaincode.fabric.server import ServerConfig, build_server, serve

__all__ = ["FabricLedgerContext", "ServerConfig", "build_server", "serve"]

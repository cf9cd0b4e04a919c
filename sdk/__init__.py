"""fedledger's client SDK: one small typed surface over interchangeable ledgers.

    identity, signer = load_msp_identity(msp_dir, "Org1MSP")
    with connect(identity, signer=signer, ledger_dir=...) as gateway:      # or endpoint=..., tls_root_cert=...
        network = gateway.get_network("mychannel")
        client = FedLedgerClient(network.get_contract("fedledger"), network)
"""

from fedledger.identity import Identity, Signer, ecdsa_signer, load_msp_identity
from fedledger.sdk.backend import Backend, ChaincodeEvent, Proposal, SubmitResult
from fedledger.sdk.client import Balance, FedLedgerClient
from fedledger.sdk.errors import (
    CommitError,
    CommitStatusError,
    ContractRejected,
    EndorseError,
    GatewayError,
    SubmitError,
)
from fedledger.sdk.gateway import Contract, EventStream, Gateway, Network, connect

__all__ = [
    "Backend",
    "Balance",
    "ChaincodeEvent",
    "CommitError",
    "CommitStatusError",
    "Contract",
    "ContractRejected",
    "EndorseError",
    "EventStream",
    "FedLedgerClient",
    "Gateway",
    "GatewayError",
    "Identity",
    "Network",
    "Proposal",
    "Signer",
    "SubmitError",
    "SubmitResult",
    "connect",
    "ecdsa_signer",
    "load_msp_identity",
]

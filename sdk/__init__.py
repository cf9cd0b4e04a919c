"""fedledger's client SDK: one small typed surface over interchangeable ledgers.

    identity, signer = load_msp_identity(msp_dir, "Org1MSP")
    client = open_client(LedgerLocation("embedded", consortium_dir), identity, signer)   # or "fabric", network_dir

``open_client`` is the one way the project connects; underneath it, ``connect(identity, signer=...,
ledger_dir=... | endpoint=..., tls_root_cert=...)`` → ``get_network(channel)`` → ``get_contract(name)``.
"""

from fedledger.identity import Identity, Signer, ecdsa_signer, load_msp_identity
from fedledger.sdk.backend import Backend, ChaincodeEvent, Proposal, SubmitResult
from fedledger.sdk.client import Balance, FedLedgerClient
from fedledger.sdk.connection import LedgerLocation, open_client
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
    "LedgerLocation",
    "Network",
    "Proposal",
    "Signer",
    "SubmitError",
    "SubmitResult",
    "connect",
    "ecdsa_signer",
    "load_msp_identity",
    "open_client",
]

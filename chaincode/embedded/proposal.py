"""Signed transaction proposals of the embedded ledger.

Shaped like Fabric's: the transaction id is ``sha256(nonce ‖ creator)``; the creator signs the
canonical header (which commits to the SHA-256 of every transient field, so the transient bytes
are authenticated without ever being written to a block).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def transaction_id(nonce: bytes, mspid: str, cert_pem: bytes) -> str:
    return hashlib.sha256(nonce + mspid.encode() + cert_pem).hexdigest()


@dataclass(frozen=True)
class SignedProposal:
    header: bytes  # canonical JSON, exactly the bytes that were signed
    signature: bytes
    transient: Mapping[str, bytes]

    @property
    def fields(self) -> dict[str, Any]:
        return json.loads(self.header)

    @property
    def tx_id(self) -> str:
        return self.fields["tx_id"]


def build_header(
    *,
    channel: str,
    chaincode: str,
    function: str,
    arguments: Sequence[bytes],
    transient: Mapping[str, bytes],
    mspid: str,
    cert_pem: bytes,
    timestamp: float,
    nonce: bytes | None = None,
) -> bytes:
    nonce = nonce if nonce is not None else os.urandom(24)
    return canonical(
        {
            "channel": channel,
            "chaincode": chaincode,
            "function": function,
            "args": [_b64(a) for a in arguments],
            "transient_sha256": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(transient.items())},
            "creator": {"mspid": mspid, "cert_pem": cert_pem.decode()},
            "nonce": nonce.hex(),
            "tx_id": transaction_id(nonce, mspid, cert_pem),
            "timestamp": timestamp,
        }
    )


def decode_args(fields: Mapping[str, Any]) -> list[bytes]:
    """The transaction's arguments as the client sent them (the contract decodes them as text)."""
    return [base64.b64decode(a) for a in fields["args"]]

"""Who is calling: the participant id and organisational unit taken from the creator's certificate.

The identity is never taken from arguments. Parsing X.509 is pure Python (cryptography), so this
stays on the business-logic side of the port.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from fedledger.chaincode.context import Creator
from fedledger.chaincode.errors import PermissionDenied


@dataclass(frozen=True)
class Caller:
    id: str
    mspid: str
    common_name: str
    organizational_units: tuple[str, ...]
    fingerprint: str

    @property
    def is_admin(self) -> bool:
        return "admin" in self.organizational_units


def caller_of(creator: Creator) -> Caller:
    try:
        cert = x509.load_pem_x509_certificate(creator.cert_pem)
    except ValueError as exc:
        raise PermissionDenied(f"the transaction creator's certificate cannot be parsed: {exc}") from None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        raise PermissionDenied("the transaction creator's certificate has no common name")
    common_name = str(cns[0].value)
    ous = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME))
    fingerprint = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    return Caller(
        id=participant_id(creator.mspid, common_name),
        mspid=creator.mspid,
        common_name=common_name,
        organizational_units=ous,
        fingerprint=fingerprint,
    )


def participant_id(mspid: str, common_name: str) -> str:
    return f"{mspid}:{common_name}"

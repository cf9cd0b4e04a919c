"""Signing identities: an MSP ID with an X.509 certificate, and a function that signs as it.

Both backends need the same thing: the Fabric Gateway backend signs proposals, transactions and
requests; the embedded ledger signs (and checks) transactions the way a peer would. Keeping it
here, free of any Fabric protobuf import, lets the embedded ledger use it without the ``fabric``
extra.

Fabric verifies ECDSA signatures only in their canonical *low-S* form (``s <= n/2``; a peer
answers "Invalid S. Must be smaller than half the order" otherwise), because both ``(r, s)`` and
``(r, n - s)`` verify and the second would let anyone change a transaction's signature bytes.
OpenSSL returns either form, so :func:`ecdsa_signer` normalises every signature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

__all__ = [
    "CURVE_ORDERS",
    "Identity",
    "Signer",
    "ecdsa_signer",
    "is_low_s",
    "load_msp_identity",
    "load_private_key",
    "to_low_s",
    "verify_signature",
]

logger = logging.getLogger(__name__)

Signer = Callable[[bytes], bytes]
"""Signs a whole message (not a digest): DER ECDSA over SHA-256, low-S."""

# Group orders n of the curves Fabric's default MSP accepts (SEC 2, sections 2.4.2 and 2.5.1).
CURVE_ORDERS: dict[str, int] = {
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp384r1": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
}


@dataclass(frozen=True)
class Identity:
    """Who signs: the MSP ID of the organisation and the PEM certificate it issued.

    ``cert_pem`` is kept as the exact bytes read from the MSP folder, because Fabric compares
    and hashes the serialized identity byte for byte (the transaction id depends on it).
    """

    mspid: str
    cert_pem: bytes

    def certificate(self) -> x509.Certificate:
        """The parsed certificate (subject, public key...)."""
        return x509.load_pem_x509_certificate(self.cert_pem)


def _curve_order(curve: ec.EllipticCurve) -> int:
    try:
        return CURVE_ORDERS[curve.name]
    except KeyError:
        raise ValueError(f"Unsupported curve {curve.name!r}: Fabric MSPs use {sorted(CURVE_ORDERS)}.") from None


def to_low_s(signature: bytes, order: int) -> bytes:
    """Returns the DER signature with ``s`` replaced by ``n - s`` when ``s`` is above ``n/2``."""
    r, s = decode_dss_signature(signature)
    if s > order // 2:
        s = order - s
    return encode_dss_signature(r, s)


def is_low_s(signature: bytes, order: int = CURVE_ORDERS["secp256r1"]) -> bool:
    """True when the DER signature is in the canonical form that Fabric accepts."""
    _, s = decode_dss_signature(signature)
    return s <= order // 2


def ecdsa_signer(private_key: ec.EllipticCurvePrivateKey) -> Signer:
    """A :data:`Signer` for an EC private key: SHA-256 digest, DER encoding, low-S.

    SHA-256 is used for every curve because it is the hash family of Fabric's default BCCSP
    configuration (``SHA2``/256), whatever the key size.
    """
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"Fabric identities sign with ECDSA; got a {type(private_key).__name__} key instead.")
    order = _curve_order(private_key.curve)

    def sign(message: bytes) -> bytes:
        return to_low_s(private_key.sign(message, ec.ECDSA(hashes.SHA256())), order)

    return sign


def verify_signature(identity: Identity, message: bytes, signature: bytes) -> bool:
    """Checks a signature as a peer does: valid for the certificate's key and low-S."""
    public_key = identity.certificate().public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return False
    try:
        if not is_low_s(signature, _curve_order(public_key.curve)):
            return False
        public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def load_private_key(path: Path | str) -> ec.EllipticCurvePrivateKey:
    """Loads an unencrypted PEM EC private key (cryptogen and fabric-ca write PKCS#8)."""
    data = Path(path).read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, not an EC private key.")
    return key


def _single_file(folder: Path, patterns: tuple[str, ...], what: str) -> Path:
    for pattern in patterns:
        found = sorted(p for p in folder.glob(pattern) if p.is_file())
        if found:
            if len(found) > 1:
                logger.warning("%s: several %s files, using %s", folder, what, found[0].name)
            return found[0]
    raise FileNotFoundError(
        f"No {what} in {folder} (looked for {', '.join(patterns)}). "
        "Point at an MSP folder such as .../users/User1@org1.example.com/msp."
    )


def load_msp_identity(msp_dir: Path | str, mspid: str) -> tuple[Identity, Signer]:
    """Loads a signing identity from an MSP folder in fabric-samples test-network layout.

    ``msp_dir`` holds ``signcerts/*.pem`` (the certificate) and ``keystore/`` with the key as
    ``priv_sk`` (cryptogen) or ``<ski>_sk`` (fabric-ca-client). The MSP ID is not written in
    the folder, so the caller names it (``Org1MSP``). The key is checked against the
    certificate here, because a mismatch would otherwise only show as a peer's vague
    "signature validation failed".
    """
    msp = Path(msp_dir)
    if not msp.is_dir():
        raise FileNotFoundError(f"MSP folder {msp} does not exist.")
    cert_path = _single_file(msp / "signcerts", ("*.pem", "*cert*"), "certificate")
    key_path = _single_file(msp / "keystore", ("priv_sk", "*_sk", "*.pem", "*"), "private key")
    identity = Identity(mspid=mspid, cert_pem=cert_path.read_bytes())
    key = load_private_key(key_path)
    cert_key = identity.certificate().public_key()
    numbers = key.public_key().public_numbers()
    if not isinstance(cert_key, ec.EllipticCurvePublicKey) or cert_key.public_numbers() != numbers:
        raise ValueError(f"The private key {key_path} does not match the certificate {cert_path}.")
    return identity, ecdsa_signer(key)

"""Throwaway identities for tests: MSP folders in cryptogen layout, and clients issued by an org CA."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_msp(
    folder: Path,
    *,
    common_name: str = "User1@org1.example.com",
    key_name: str = "priv_sk",
    curve: ec.EllipticCurve | None = None,
) -> ec.EllipticCurvePrivateKey:
    """Writes an MSP folder in cryptogen layout (self-signed, good enough for the client side)."""
    key = ec.generate_private_key(curve or ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (folder / "signcerts").mkdir(parents=True)
    (folder / "keystore").mkdir()
    (folder / "signcerts" / f"{common_name}-cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "keystore" / key_name).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key


def issue_client_identity(ca_dir: Path, out: Path, common_name: str) -> Path:
    """Issues a client certificate (OU=client) from an org CA folder of cryptogen; returns the MSP dir.

    Fabric only checks that the certificate chains to the org's CA and carries the client OU, so
    the tests can create as many distinct participants as they need without cryptogen.
    """
    ca_cert_path = next(p for p in ca_dir.glob("*.pem") if "cert" in p.name)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(next(ca_dir.glob("*_sk")).read_bytes(), password=None)
    ca_public_key = ca_cert.public_key()
    # Fabric CAs (cryptogen's and fabric-ca's) are ECDSA
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey), type(ca_key)
    assert isinstance(ca_public_key, ec.EllipticCurvePublicKey), type(ca_public_key)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "client"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # never before the CA itself: cryptogen backdates CAs only to the rounded minute minus 5 minutes
        .not_valid_before(max(now - datetime.timedelta(minutes=5), ca_cert.not_valid_before_utc))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public_key), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    msp = out / common_name / "msp"
    (msp / "signcerts").mkdir(parents=True)
    (msp / "keystore").mkdir()
    (msp / "signcerts" / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (msp / "keystore" / "priv_sk").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return msp

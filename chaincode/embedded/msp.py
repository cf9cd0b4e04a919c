"""Generates X.509/ECDSA identities laid out like Fabric MSP folders (cryptogen's layout).

The embedded ledger needs real signing identities without a Fabric toolchain: a CA per
organisation, an OU=admin Admin@ user, and any number of OU=client users, each with
``msp/{signcerts,keystore,cacerts}``. The same folders load with ``load_msp_identity`` and work
with the Fabric backend's identity loader. Written by hand because cryptogen is a Go binary that
only the native network builds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class Organization:
    mspid: str
    domain: str
    path: Path

    @property
    def ca_cert_path(self) -> Path:
        return self.path / "ca" / f"ca.{self.domain}-cert.pem"

    def user_msp(self, user: str) -> Path:
        return self.path / "users" / f"{user}@{self.domain}" / "msp"


def _name(common_name: str, org: str, ou: str | None = None) -> x509.Name:
    parts = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
    ]
    if ou:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(parts)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _cert(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    if not_before is not None:
        # Never start before the issuing CA: Fabric's MSP validates the chain at the certificate's
        # start time, and cryptogen backdates its CAs only to the rounded minute minus 5 minutes.
        now = max(now, not_before)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    usage = dict(
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=True, crl_sign=True, **usage),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False, crl_sign=False, **usage),
            critical=True,
        )
    return builder.sign(signing_key, hashes.SHA256())


def create_organization(base: Path, mspid: str, domain: str) -> Organization:
    """A CA and the organisation MSP (cacerts + NodeOUs config); idempotent."""
    org = Organization(mspid, domain, Path(base) / domain)
    if org.ca_cert_path.exists():
        return org
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"ca.{domain}", domain)
    cert = _cert(name, name, key.public_key(), key, ca=True)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    _write_key(org.path / "ca" / "priv_sk", key)
    org.ca_cert_path.write_bytes(pem)
    cacerts = org.path / "msp" / "cacerts"
    cacerts.mkdir(parents=True, exist_ok=True)
    (cacerts / org.ca_cert_path.name).write_bytes(pem)
    (org.path / "msp" / "config.yaml").write_text(_node_ous(org.ca_cert_path.name))
    return org


def _node_ous(ca_file: str) -> str:
    lines = ["NodeOUs:", "  Enable: true"]
    for ou in ("client", "peer", "admin", "orderer"):
        lines += [
            f"  {ou.capitalize()}OUIdentifier:",
            f"    Certificate: cacerts/{ca_file}",
            f"    OrganizationalUnitIdentifier: {ou}",
        ]
    return "\n".join(lines) + "\n"


def add_user(org: Organization, user: str, *, ou: str = "client") -> Path:
    """Issues ``user@domain`` with the given OU (admin / client) and lays out its MSP folder."""
    msp = org.user_msp(user)
    cert_path = msp / "signcerts" / f"{user}@{org.domain}-cert.pem"
    if cert_path.exists():
        return msp
    ca_key = serialization.load_pem_private_key((org.path / "ca" / "priv_sk").read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(org.ca_cert_path.read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(
        _name(f"{user}@{org.domain}", org.domain, ou),
        ca_cert.subject,
        key.public_key(),
        ca_key,
        ca=False,
        not_before=ca_cert.not_valid_before_utc,
    )
    _write_key(msp / "keystore" / "priv_sk", key)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (msp / "cacerts").mkdir(parents=True, exist_ok=True)
    (msp / "cacerts" / org.ca_cert_path.name).write_bytes(org.ca_cert_path.read_bytes())
    return msp

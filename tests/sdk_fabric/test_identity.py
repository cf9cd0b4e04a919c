"""Identity loading and signing: what a peer checks before it looks at a transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.identity import (
    CURVE_ORDERS,
    Identity,
    ecdsa_signer,
    is_low_s,
    load_msp_identity,
    to_low_s,
    verify_signature,
)

from .certs import make_msp

N256 = CURVE_ORDERS["secp256r1"]


def test_signer_works_on_both_fabric_curves():
    # A wrong group order in CURVE_ORDERS would turn a flipped S into an invalid signature.
    for curve in (ec.SECP256R1(), ec.SECP384R1()):
        key = ec.generate_private_key(curve)
        signature = ecdsa_signer(key)(b"m")
        key.public_key().verify(signature, b"m", ec.ECDSA(hashes.SHA256()))


def test_to_low_s_flips_high_s_and_keeps_validity():
    # Prepare
    key = ec.generate_private_key(ec.SECP256R1())
    r, s = decode_dss_signature(key.sign(b"payload", ec.ECDSA(hashes.SHA256())))
    high = encode_dss_signature(r, s if s > N256 // 2 else N256 - s)
    # Execute
    low = to_low_s(high, N256)
    # Assert: both verify mathematically, only the low one is canonical
    key.public_key().verify(high, b"payload", ec.ECDSA(hashes.SHA256()))
    key.public_key().verify(low, b"payload", ec.ECDSA(hashes.SHA256()))
    assert not is_low_s(high)
    assert is_low_s(low)
    assert decode_dss_signature(low)[1] == N256 - decode_dss_signature(high)[1]
    assert to_low_s(low, N256) == low


def test_signer_always_low_s_and_verifies():
    key = ec.generate_private_key(ec.SECP256R1())
    sign = ecdsa_signer(key)
    # 200 signatures: OpenSSL yields high S about half the time, so this would catch a missing flip.
    for i in range(200):
        message = b"message %d" % i
        signature = sign(message)
        assert is_low_s(signature)
        key.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))


def test_verify_signature_rejects_high_s_forged_and_tampered(tmp_path: Path):
    key = make_msp(tmp_path / "msp")
    identity, sign = load_msp_identity(tmp_path / "msp", "Org1MSP")
    signature = sign(b"tx")
    r, s = decode_dss_signature(signature)
    other = ecdsa_signer(ec.generate_private_key(ec.SECP256R1()))

    assert verify_signature(identity, b"tx", signature)
    assert not verify_signature(identity, b"tx", encode_dss_signature(r, N256 - s))  # high S
    assert not verify_signature(identity, b"tx", other(b"tx"))  # someone else's key
    assert not verify_signature(identity, b"tx!", signature)  # other message
    assert not verify_signature(identity, b"tx", b"\x30\x00")  # garbage DER
    certified_key = identity.certificate().public_key()
    assert isinstance(certified_key, ec.EllipticCurvePublicKey)
    assert key.public_key().public_numbers() == certified_key.public_numbers()


@pytest.mark.parametrize("key_name", ["priv_sk", "0123abcd_sk"])
def test_load_msp_identity_cryptogen_and_ca_layouts(tmp_path: Path, key_name: str):
    make_msp(tmp_path / "msp", key_name=key_name)
    identity, sign = load_msp_identity(tmp_path / "msp", "Org1MSP")
    assert identity.mspid == "Org1MSP"
    assert identity.cert_pem == next((tmp_path / "msp" / "signcerts").glob("*.pem")).read_bytes()
    assert verify_signature(identity, b"x", sign(b"x"))


def test_load_msp_identity_errors_are_explicit(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_msp_identity(tmp_path / "missing", "Org1MSP")
    make_msp(tmp_path / "a")
    make_msp(tmp_path / "b")
    (tmp_path / "a" / "keystore" / "priv_sk").write_bytes((tmp_path / "b" / "keystore" / "priv_sk").read_bytes())
    with pytest.raises(ValueError, match="does not match the certificate"):
        load_msp_identity(tmp_path / "a", "Org1MSP")
    (tmp_path / "b" / "keystore" / "priv_sk").unlink()
    with pytest.raises(FileNotFoundError, match="No private key"):
        load_msp_identity(tmp_path / "b", "Org1MSP")


def test_identity_is_hashable_value():
    assert Identity("Org1MSP", b"pem") == Identity("Org1MSP", b"pem")
    assert len({Identity("Org1MSP", b"pem"), Identity("Org1MSP", b"pem")}) == 1


_KEY = ec.generate_private_key(ec.SECP256R1())
_SIGN = ecdsa_signer(_KEY)


@settings(max_examples=200, deadline=None)
@given(message=st.binary(max_size=2048))
def test_every_signature_is_canonical_and_valid(message: bytes):
    signature = _SIGN(message)
    assert is_low_s(signature)
    _KEY.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(signature)
    assert to_low_s(encode_dss_signature(r, N256 - s), N256) == signature

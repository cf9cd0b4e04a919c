"""UpdateStore: where update and model bytes live outside the ledger, encrypted at rest.

Content-addressed by the SHA-256 of the plaintext — the very hash the contract records on chain —
so anything read back is verified against the ledger. Each object is sealed with AES-256-GCM
(``cryptography``'s AESGCM, a standard AEAD): a fresh 96-bit nonce per object and the hash as
associated data, so a file renamed to another hash, or altered in any bit, fails to open.

Key management: one 256-bit key per consortium, in ``<consortium>/store.key`` (mode 0600), created
by whoever creates the store and handed to members and the aggregator over the consortium's own
secure channel (the same way MSP key material is distributed). Peers never need it: update bytes
reach the endorsers as transient data over TLS, not through the store. Rotate by re-sealing
objects under a new key (``UpdateStore.rekey``).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["StoreError", "UpdateStore", "create_key", "load_key"]

_MAGIC = b"FLS1"
_NONCE = 12
_HASH = re.compile(r"^[0-9a-f]{64}$")


class StoreError(Exception):
    """An object is missing, was altered, or the key is wrong."""


def create_key(path: Path | str) -> bytes:
    """Writes a new random 256-bit key (refuses to overwrite one)."""
    path = Path(path)
    key = AESGCM.generate_key(bit_length=256)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def load_key(path: Path | str) -> bytes:
    key = Path(path).read_bytes()
    if len(key) != 32:
        raise StoreError(f"{path} does not hold a 256-bit key ({len(key)} bytes)")
    return key


class UpdateStore:
    def __init__(self, root: Path | str, key: bytes) -> None:
        if len(key) != 32:
            raise StoreError("the store key must be 32 bytes (AES-256)")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._aead = AESGCM(key)

    def _path(self, digest: str) -> Path:
        if not _HASH.match(digest):
            raise StoreError(f"not a SHA-256 hex digest: {digest!r}")
        return self.root / digest[:2] / f"{digest}.sealed"

    def put(self, data: bytes) -> str:
        """Seals ``data`` and returns its SHA-256 (idempotent: the same bytes are stored once)."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.exists():
            return digest
        nonce = os.urandom(_NONCE)
        sealed = _MAGIC + nonce + self._aead.encrypt(nonce, data, digest.encode())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(sealed)
        tmp.replace(path)  # atomic: a crash never leaves a half-written object under its hash
        return digest

    def get(self, digest: str) -> bytes:
        """The plaintext whose SHA-256 is ``digest``; raises StoreError if missing or altered."""
        path = self._path(digest)
        try:
            sealed = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"object {digest} is not in the store {self.root}") from None
        if not sealed.startswith(_MAGIC) or len(sealed) < len(_MAGIC) + _NONCE + 16:
            raise StoreError(f"object {digest} is not a sealed fedledger object")
        nonce = sealed[len(_MAGIC) : len(_MAGIC) + _NONCE]
        try:
            data = self._aead.decrypt(nonce, sealed[len(_MAGIC) + _NONCE :], digest.encode())
        except InvalidTag:
            raise StoreError(f"object {digest} was altered, or the store key is wrong") from None
        if hashlib.sha256(data).hexdigest() != digest:  # defence in depth; the tag already binds it
            raise StoreError(f"object {digest} does not hash to its name")
        return data

    # Sealed shares are HPKE-sealed to one organisation already (fedledger.shares): stored as they are, under
    # the commitment of the share inside, which only the organisation that opens them can check.
    def _share_path(self, commitment: str) -> Path:
        if not _HASH.match(commitment):
            raise StoreError(f"not a SHA-256 hex digest: {commitment!r}")
        return self.root / "shares" / f"{commitment}.hpke"

    def put_sealed_share(self, commitment: str, sealed: bytes) -> None:
        path = self._share_path(commitment)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(sealed)
        tmp.replace(path)

    def sealed_share(self, commitment: str) -> bytes:
        """The sealed share filed under ``commitment``; StoreError when no member filed it."""
        try:
            return self._share_path(commitment).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"no sealed share {commitment} in the store {self.root}") from None

    def __contains__(self, digest: str) -> bool:
        return self._path(digest).exists()

    def rekey(self, new_key: bytes) -> UpdateStore:
        """Re-seals every object under ``new_key``; returns the store opened with it."""
        renewed = UpdateStore(self.root, new_key)
        for path in sorted(self.root.glob("*/*.sealed")):
            digest = path.stem
            data = self.get(digest)
            path.unlink()
            renewed.put(data)
        return renewed

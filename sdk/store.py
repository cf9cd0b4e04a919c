"""UpdateStore: where models, share sums, sealed shares and (plaintext mode) updates live outside the ledger.

Content-addressed by the SHA-256 of the plaintext — the very hash the contract records on chain — so
anything read back is verified against the ledger.

Secret-shared rounds need no store key: a member's update never enters the store, only its shares, each
HPKE-sealed to one organisation (``fedledger.shares``, filed under the share's commitment), and what else the
store holds (global models, each organisation's share sum, which alone is uniform noise) is what every member
receives anyway. Such objects are kept as they are (``<hash>.obj``).

Plaintext rounds (rules ``secure_aggregation: false``) put whole updates in the store, so a consortium that
runs them opens the store with its key: each object is then sealed with AES-256-GCM (``cryptography``'s AESGCM,
a standard AEAD; a fresh 96-bit nonce per object and the hash as associated data, so a file renamed to another
hash, or altered in any bit, fails to open), under one 256-bit key per consortium in ``store.key`` (mode 0600),
distributed like MSP key material. Rotate by re-sealing objects under a new key (``UpdateStore.rekey``).
A store opened with a key still reads objects written without one, and the other way round it says which key
it needs.
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
    def __init__(self, root: Path | str, key: bytes | None = None) -> None:
        """``key``: the consortium's store key, for consortia that run plaintext rounds; None keeps objects as
        they are (secret-shared rounds put nothing in the store that needs it)."""
        if key is not None and len(key) != 32:
            raise StoreError("the store key must be 32 bytes (AES-256)")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._aead = AESGCM(key) if key is not None else None

    @property
    def sealed(self) -> bool:
        """Whether objects put here are sealed under the consortium's store key."""
        return self._aead is not None

    def _path(self, digest: str, suffix: str = ".sealed") -> Path:
        if not _HASH.match(digest):
            raise StoreError(f"not a SHA-256 hex digest: {digest!r}")
        return self.root / digest[:2] / f"{digest}{suffix}"

    def put(self, data: bytes) -> str:
        """Stores ``data`` (sealed when the store has a key) and returns its SHA-256; idempotent."""
        digest = hashlib.sha256(data).hexdigest()
        if self._path(digest).exists() or self._path(digest, ".obj").exists():
            return digest
        if self._aead is not None:
            nonce = os.urandom(_NONCE)
            path, content = self._path(digest), _MAGIC + nonce + self._aead.encrypt(nonce, data, digest.encode())
        else:
            path, content = self._path(digest, ".obj"), data
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(content)
        tmp.replace(path)  # atomic: a crash never leaves a half-written object under its hash
        return digest

    def get(self, digest: str) -> bytes:
        """The plaintext whose SHA-256 is ``digest``; raises StoreError if missing or altered."""
        plain = self._path(digest, ".obj")
        if plain.exists():
            data = plain.read_bytes()
            if hashlib.sha256(data).hexdigest() != digest:
                raise StoreError(f"object {digest} was altered: its bytes no longer hash to its name")
            return data
        path = self._path(digest)
        try:
            sealed = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"object {digest} is not in the store {self.root}") from None
        if self._aead is None:
            raise StoreError(
                f"object {digest} is sealed under the consortium's store key; open the store with it (--store-key)"
            )
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
        return self._path(digest).exists() or self._path(digest, ".obj").exists()

    def rekey(self, new_key: bytes) -> UpdateStore:
        """Re-seals every object under ``new_key``; returns the store opened with it."""
        renewed = UpdateStore(self.root, new_key)
        for path in sorted(self.root.glob("*/*.sealed")):
            digest = path.stem
            data = self.get(digest)
            path.unlink()
            renewed.put(data)
        return renewed

"""UpdateStore: encrypted at rest, content-addressed, verified on read."""

from __future__ import annotations

import hashlib

import pytest

from fedledger.sdk.store import StoreError, UpdateStore, create_key, load_key


@pytest.fixture
def store(tmp_path):
    return UpdateStore(tmp_path / "store", create_key(tmp_path / "store.key"))


def test_round_trip_is_keyed_by_the_plaintext_hash(store):
    data = b"lora delta" * 1000
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert digest in store and store.get(digest) == data
    assert store.put(data) == digest  # idempotent


def test_bytes_are_encrypted_at_rest(store):
    data = b"patient 4711 has label malignant " * 50
    digest = store.put(data)
    (sealed,) = list(store.root.glob("*/*.sealed"))
    raw = sealed.read_bytes()
    assert b"patient" not in raw and len(raw) == len(data) + 4 + 12 + 16
    assert sealed.stat().st_mode & 0o777 != 0 and digest in sealed.name


def test_altered_object_is_refused(store):
    digest = store.put(b"x" * 100)
    (sealed,) = list(store.root.glob("*/*.sealed"))
    raw = bytearray(sealed.read_bytes())
    raw[-1] ^= 1
    sealed.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="altered"):
        store.get(digest)


def test_object_renamed_to_another_hash_is_refused(store):
    a, b = store.put(b"a" * 10), store.put(b"b" * 10)
    path_a, path_b = store._path(a), store._path(b)
    path_b.write_bytes(path_a.read_bytes())
    with pytest.raises(StoreError, match="altered"):
        store.get(b)


def test_wrong_key_missing_object_and_bad_names(store, tmp_path):
    digest = store.put(b"secret")
    other = UpdateStore(store.root, create_key(tmp_path / "other.key"))
    with pytest.raises(StoreError, match="key is wrong"):
        other.get(digest)
    with pytest.raises(StoreError, match="not in the store"):
        store.get("0" * 64)
    with pytest.raises(StoreError, match="not a SHA-256"):
        store.get("../../etc/passwd")
    with pytest.raises(FileExistsError):
        create_key(tmp_path / "store.key")
    (tmp_path / "short.key").write_bytes(b"123")
    with pytest.raises(StoreError, match="256-bit"):
        load_key(tmp_path / "short.key")


def test_rekey_keeps_every_object_readable_only_with_the_new_key(store, tmp_path):
    digests = [store.put(bytes([i]) * 64) for i in range(5)]
    new_key = create_key(tmp_path / "new.key")
    renewed = store.rekey(new_key)
    assert [renewed.get(d) for d in digests] == [bytes([i]) * 64 for i in range(5)]
    with pytest.raises(StoreError):
        store.get(digests[0])

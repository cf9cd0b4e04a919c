"""Additive secret shares of a model update: fixed point in Z_2^64, one share per organisation, each sealed to
that organisation's own X25519 key with HPKE; SHA-256 commitments; per-organisation (weighted) sums.

The foundation of issue 13 (private updates): no contract, SDK or Fabric code uses it yet. Every decision, with
its reason (README, "Private updates (design)", lists them together):

- **Ring Z_2^64** (``uint64``, wrapping arithmetic). numpy adds and multiplies ``uint64`` modulo 2^64 natively,
  so sums, weighted sums and the count sketch of a share (``anomaly.features.ring_sketch``) are plain
  vectorised numpy with no modular reduction step; a share word is exactly 8 bytes. Signed values are read as
  two's complement: a ring element ``v`` means ``v`` if ``v < 2^63`` else ``v - 2^64``.
- **Scale** :data:`DEFAULT_SCALE` = 32 fractional bits (resolution 2^-32 ≈ 2.3e-10, below float32's spacing
  for the |x| ≥ 1e-3 that carry a LoRA delta's norm). A value ``x`` is ``round(x * 2^scale)``.
- **Range**: :func:`encode_fixed` refuses (:class:`FixedPointRangeError`, never a silent wrap) any value with
  ``|x| * 2^scale * total_weight > 2^62``. With ``total_weight`` = the sum of the integer FedAvg weights that
  will multiply the encoded updates (:data:`TOTAL_WEIGHT`, the contract's ``WEIGHT_UNITS`` = 10^6), every
  weighted sum of such updates stays below 2^62 in magnitude, so it decodes exactly, with one bit to spare. At
  the default scale that admits |x| ≤ 2^30 / 10^6 ≈ 1073 per coordinate: above the default rules'
  ``max_update_norm`` (1e3), so every update the norm rule admits can be encoded. A plain sum of N updates
  encoded with ``total_weight=N`` decodes exactly as well.
- **Shares** (:func:`split`): K ≥ 2 (one share per member organisation, so privacy holds against any K-1 of
  them); the first K-1 are uniform random words from a CSPRNG, the last makes them add up. Each share alone
  is uniform on Z_2^64 whatever the update: it says nothing about it. Any K colluding organisations (all of
  them) recover the update; K-1 learn nothing. The randomness is AES-256-CTR keystream under a fresh
  ``os.urandom`` key and nonce (the generator of NIST SP 800-90A's CTR_DRBG, from ``cryptography``); plain
  ``os.urandom`` costs ~50 ms per 8 MB on the machines here against ~7 ms, and numpy's generators are not
  cryptographic. Replicated 2-of-3 sharing is not built.
- **Share bytes** (:meth:`Share.to_bytes`): ``FLSH``, a version byte, a 4-byte length and a sorted-keys JSON
  header (version, organisation, share index, K, scale, SHA-256 of the update's manifest), then the words, little
  endian, tensors sorted by name as in the codec (``fedledger.tensors``). The header carries the manifest's
  digest, not the manifest: a reader parses a share only against the round's base-model manifest, which it has
  anyway, so a share of the wrong shape cannot be read at all.
- **Commitment**: :func:`share_commitment` is the SHA-256 of the share bytes (header included, so the
  commitment binds the organisation, index and scale too). The ledger records one per share, never a share.
  A share is uniform, so its hash reveals nothing about the update.
- **Sealing** (:func:`seal_share`): HPKE base mode (RFC 9180), DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
  AES-128-GCM (:data:`SUITE`): the suite of MLS' default cipher suite, 128-bit security throughout, AES-NI fast
  (~13 ms per 8 MB here), and all of it ``cryptography``'s; nothing hand-made. ``cryptography`` exposes HPKE's
  ``info`` (not its ``aad``), so the binding — organisation, round, participant, share index, the recipient
  key's id — goes into ``info``: it enters the key schedule, and a share opened under any other binding fails
  its tag. The binding is also written in clear before the ciphertext (it is public: it is what the ledger
  records beside the commitment), so that :func:`open_share` can refuse a share meant for another
  organisation, round or participant with a specific error before trying to decrypt, and then decrypts with
  the binding the *caller* expects, so editing the clear copy only turns the refusal into
  :class:`TamperedShareError`.
- **Keys**: each organisation holds one X25519 key pair for shares (PEM, PKCS#8 / SubjectPublicKeyInfo); no key
  opens more than its organisation's share, and no consortium-wide key exists. Which certificate vouches for
  an organisation's share key (its MSP admin, on the ledger) is left to the contract work.
- **Aggregation** (:func:`weighted_sum`): each organisation multiplies its share of each accepted update by the
  update's integer weight and sums, in the ring; the sum over organisations of those sums is the fixed-point
  weighted sum of the updates, and dividing by the total weight (:func:`decode_fixed`'s ``divisor``) gives the
  weighted mean within 2^-(scale+1) per coordinate. Integer weights keep it exact: the contract's weights are
  integers already.

Every refusal is a :class:`SharesError` (a ``ValueError``) subclass naming what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedledger.tensors import Manifest, NDState, num_parameters

__all__ = [
    "DEFAULT_SCALE",
    "FORMAT_VERSION",
    "MIN_SHARES",
    "SUITE",
    "TOTAL_WEIGHT",
    "Binding",
    "CommitmentMismatchError",
    "FixedPointRangeError",
    "RingState",
    "SealedShare",
    "Share",
    "ShareBindingError",
    "ShareFormatError",
    "SharesError",
    "TamperedShareError",
    "WrongRecipientError",
    "combine",
    "decode_fixed",
    "encode_fixed",
    "fixed_point_bound",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "make_shares",
    "manifest_digest",
    "open_share",
    "private_key_pem",
    "public_key_pem",
    "seal_share",
    "share_commitment",
    "share_update",
    "split",
    "sum_shares",
    "verify_commitment",
    "weighted_sum",
]

logger = logging.getLogger(__name__)

#: Fractional bits of the fixed-point encoding (module docstring: why 32).
DEFAULT_SCALE = 32
#: The sum of the integer FedAvg weights of a round: the contract's ``chaincode.weights.WEIGHT_UNITS`` (a test
#: keeps the two equal; this layer may not import the contract).
TOTAL_WEIGHT = 1_000_000
#: Encoded magnitudes stay at or below 2^62 (after the total weight), one bit below the signed range.
MAGNITUDE_BITS = 62
#: Fewer shares than this would be no secret sharing at all.
MIN_SHARES = 2
FORMAT_VERSION = 1
#: HPKE suite of every sealed share (RFC 9180 names).
SUITE = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM"
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
_SHARE_MAGIC = b"FLSH"
_SEALED_MAGIC = b"FLSE"
_INFO_PREFIX = b"fedledger/share/v1\x00"
_WORD = np.dtype("<u8")

#: One share or one sum of shares: tensor name -> ``uint64`` array in the update's shape.
RingState = dict[str, np.ndarray]


class SharesError(ValueError):
    """A share, a sealed share or a fixed-point value that is refused."""


class FixedPointRangeError(SharesError):
    """A value that is not finite or too large for the ring at this scale and total weight."""


class ShareFormatError(SharesError):
    """Bytes that are not a share (or a sealed share) for this manifest, or shares that do not belong together."""


class WrongRecipientError(SharesError):
    """A sealed share addressed to another organisation or another key."""


class ShareBindingError(SharesError):
    """A sealed share bound to another round, participant or share index than expected."""


class TamperedShareError(SharesError):
    """A sealed share that does not open: altered bytes, or an edited binding."""


class CommitmentMismatchError(SharesError):
    """Share bytes whose SHA-256 is not the commitment recorded for them."""


# --- fixed point ------------------------------------------------------------------------------------------------


def fixed_point_bound(scale: int = DEFAULT_SCALE, total_weight: int = 1) -> float:
    """The largest |x| :func:`encode_fixed` accepts: ``2^62 / (2^scale * total_weight)``."""
    if not 0 <= scale <= MAGNITUDE_BITS:
        raise FixedPointRangeError(f"the scale must be 0..{MAGNITUDE_BITS} fractional bits; got {scale}")
    if total_weight < 1:
        raise FixedPointRangeError(f"the total weight must be a positive integer; got {total_weight}")
    return 2.0 ** (MAGNITUDE_BITS - scale) / total_weight


def encode_fixed(state: Mapping[str, Any], *, scale: int = DEFAULT_SCALE, total_weight: int = 1) -> RingState:
    """``round(x * 2^scale)`` of every value, as ``uint64`` (two's complement), tensors sorted by name.

    Refuses NaN, infinities and any |x| above :func:`fixed_point_bound` with one :class:`FixedPointRangeError`
    naming the tensors at fault: a wrapped value would decode to a wrong update without any sign of it.
    """
    bound = fixed_point_bound(scale, total_weight)
    factor = 2.0**scale
    out: RingState = {}
    problems = []
    for name in sorted(state):
        values = np.asarray(state[name], dtype=np.float64)
        if not np.isfinite(values).all():
            problems.append(f"tensor {name!r} contains NaN or Inf values")
            continue
        largest = float(np.abs(values).max()) if values.size else 0.0
        if largest > bound:
            problems.append(f"tensor {name!r} holds |x| = {largest:.6g} > {bound:.6g}")
            continue
        # |x| * 2^scale <= 2^62 < 2^63: the int64 cast is exact after rounding, the view is two's complement.
        out[name] = np.ascontiguousarray(np.rint(values * factor).astype(np.int64).view(np.uint64))
    if problems:
        raise FixedPointRangeError(
            f"cannot encode at scale {scale} for total weight {total_weight} (|x| <= {bound:.6g}): "
            + "; ".join(problems[:10])
        )
    return out


def decode_fixed(ring: Mapping[str, np.ndarray], *, scale: int = DEFAULT_SCALE, divisor: int = 1) -> NDState:
    """float64 values of ring elements read as signed: ``signed(v) / 2^scale / divisor`` (``divisor``: the total
    weight of a weighted sum, giving the weighted mean)."""
    if divisor < 1:
        raise SharesError(f"the divisor must be a positive integer; got {divisor}")
    factor = 2.0**scale * divisor
    return {
        name: np.asarray(ring[name], dtype=np.uint64).view(np.int64).astype(np.float64) / factor
        for name in sorted(ring)
    }


# --- additive shares --------------------------------------------------------------------------------------------


def _random_words(count: int) -> np.ndarray:
    """``count`` uniform 64-bit words from a CSPRNG: AES-256-CTR keystream under a fresh os.urandom key and
    nonce (see the module docstring for why not os.urandom itself)."""
    encryptor = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))).encryptor()
    # update_into wants room for one block more than the input; the keystream of zeros is the output.
    buffer = bytearray(8 * count + 15)
    if encryptor.update_into(bytes(8 * count), buffer) != 8 * count:  # CTR is a stream: never short
        raise RuntimeError("AES-CTR returned a short keystream")
    return np.frombuffer(buffer, dtype=_WORD, count=count)


def _check_k(k: int) -> None:
    if k < MIN_SHARES:
        raise ShareFormatError(f"secret sharing needs K >= {MIN_SHARES} shares (one per organisation); got {k}")


def split(ring: Mapping[str, np.ndarray], k: int) -> list[RingState]:
    """``k`` additive shares of ``ring`` (they sum to it modulo 2^64); each alone is uniform."""
    _check_k(k)
    names = sorted(ring)
    sizes = [int(np.asarray(ring[n]).size) for n in names]
    randoms = []
    for _ in range(k - 1):
        words = _random_words(sum(sizes))
        offsets = np.cumsum([0, *sizes])
        randoms.append(
            {
                name: words[start:end].reshape(np.shape(ring[name]))
                for name, start, end in zip(names, offsets[:-1], offsets[1:], strict=True)
            }
        )
    last = {name: np.asarray(ring[name], dtype=np.uint64) - _ring_sum([r[name] for r in randoms]) for name in names}
    return [*randoms, last]


def _ring_sum(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The sum modulo 2^64 of ``uint64`` arrays of one shape (wrapping is the ring's addition)."""
    total = np.array(arrays[0], dtype=np.uint64, copy=True)
    for a in arrays[1:]:
        total += a
    return total


def combine(parts: Sequence[Mapping[str, np.ndarray]]) -> RingState:
    """The sum of ring states (all shares of one update, or every organisation's sum): their tensors must match."""
    if not parts:
        raise ShareFormatError("nothing to combine")
    names = sorted(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if sorted(part) != names or any(np.shape(part[n]) != np.shape(parts[0][n]) for n in names):
            raise ShareFormatError(f"part {i} does not have the tensors and shapes of part 0")
    return {name: _ring_sum([np.asarray(p[name], dtype=np.uint64) for p in parts]) for name in names}


def _check_weight(w: object) -> int:
    if isinstance(w, bool) or not isinstance(w, int | np.integer) or not 0 <= int(w) < 2**63:
        raise ShareFormatError(f"weights must be integers in 0..2^63-1; got {w!r}")
    return int(w)


def _add_weighted(total: RingState, ring: Mapping[str, np.ndarray], w: int) -> None:
    for name, acc in total.items():
        values = np.asarray(ring[name], dtype=np.uint64)
        if values.shape != acc.shape:
            raise ShareFormatError(f"tensor {name!r} has shape {values.shape}; the sum has {acc.shape}")
        acc += values if w == 1 else values * np.uint64(w)  # wraps modulo 2^64: the ring's product


def weighted_sum(rings: Sequence[Mapping[str, np.ndarray]], weights: Sequence[int]) -> RingState:
    """``sum_i weights[i] * rings[i]`` modulo 2^64: one organisation's weighted sum of its shares.

    Multiplying a share by an integer is linear in the ring, so the organisations' weighted sums add up to the
    weighted sum of the updates. Weights are the contract's integers; the caller passes exactly the accepted list.
    """
    if len(rings) != len(weights):
        raise ShareFormatError(f"{len(weights)} weights for {len(rings)} shares")
    if not rings:
        raise ShareFormatError("a sum needs at least one share")
    checked = [_check_weight(w) for w in weights]
    names = sorted(rings[0])
    if any(sorted(r) != names for r in rings):
        raise ShareFormatError("the shares do not have the same tensors")
    total = {name: np.zeros(np.shape(rings[0][name]), dtype=np.uint64) for name in names}
    for ring, w in zip(rings, checked, strict=True):
        _add_weighted(total, ring, w)
    return total


# --- share bytes and commitments --------------------------------------------------------------------------------


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def manifest_digest(manifest: Manifest) -> str:
    """SHA-256 of a manifest's canonical JSON (sorted keys, shapes as lists): what a share header names."""
    return hashlib.sha256(_canonical({k: [list(v[0]), v[1]] for k, v in manifest.items()})).hexdigest()


@dataclass(frozen=True)
class Share:
    """Share ``index`` of ``k`` of one update, for organisation ``org``; ``values`` in the update's manifest."""

    org: str
    index: int
    k: int
    scale: int
    manifest_sha256: str
    values: RingState

    def header(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "k": self.k,
            "manifest_sha256": self.manifest_sha256,
            "org": self.org,
            "scale": self.scale,
            "version": FORMAT_VERSION,
        }

    def to_bytes(self) -> bytes:
        header = _canonical(self.header())
        body = b"".join(np.ascontiguousarray(self.values[n], dtype=_WORD).tobytes() for n in sorted(self.values))
        return _SHARE_MAGIC + bytes([FORMAT_VERSION]) + struct.pack("<I", len(header)) + header + body

    @classmethod
    def from_bytes(cls, data: bytes, manifest: Manifest) -> Share:
        """The share in ``data``, read against the round's base-model ``manifest`` (its digest must match)."""
        prefix = len(_SHARE_MAGIC) + 5
        if len(data) < prefix or not data.startswith(_SHARE_MAGIC) or data[4] != FORMAT_VERSION:
            raise ShareFormatError("not a fedledger share (bad magic or version)")
        (length,) = struct.unpack_from("<I", data, 5)
        try:
            header = json.loads(data[prefix : prefix + length])
            org, index, k, scale = str(header["org"]), int(header["index"]), int(header["k"]), int(header["scale"])
            digest = str(header["manifest_sha256"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ShareFormatError(f"the share header is not valid: {exc}") from None
        _check_k(k)
        if not 0 <= index < k:
            raise ShareFormatError(f"share index {index} is outside 0..{k - 1}")
        if digest != manifest_digest(manifest):
            raise ShareFormatError("the share is for another manifest than the round's base model")
        body = memoryview(data)[prefix + length :]
        if len(body) != 8 * num_parameters(manifest):
            raise ShareFormatError(
                f"the share holds {len(body)} bytes of words; the manifest needs {8 * num_parameters(manifest)}"
            )
        words = np.frombuffer(body, dtype=_WORD)
        values: RingState = {}
        offset = 0
        for name in sorted(manifest):
            shape = [int(d) for d in manifest[name][0]]
            size = math.prod(shape)
            values[name] = words[offset : offset + size].astype(np.uint64).reshape(shape)
            offset += size
        return cls(org, index, k, scale, digest, values)


def make_shares(
    state: Mapping[str, Any],
    orgs: Sequence[str],
    *,
    manifest: Manifest,
    scale: int = DEFAULT_SCALE,
    total_weight: int = TOTAL_WEIGHT,
) -> list[Share]:
    """One :class:`Share` of the update per organisation, in the order of ``orgs`` (index = position)."""
    if len(set(orgs)) != len(orgs):
        raise ShareFormatError(f"organisations must be distinct; got {list(orgs)}")
    _check_k(len(orgs))
    ring = encode_fixed(state, scale=scale, total_weight=total_weight)
    if sorted(ring) != sorted(manifest) or any(list(ring[n].shape) != list(manifest[n][0]) for n in ring):
        raise ShareFormatError("the update does not have the manifest's tensors and shapes")
    digest = manifest_digest(manifest)
    return [
        Share(org, i, len(orgs), scale, digest, part)
        for i, (org, part) in enumerate(zip(orgs, split(ring, len(orgs)), strict=True))
    ]


def share_commitment(data: bytes) -> str:
    """The hex SHA-256 of share bytes: what the ledger records for the share."""
    return hashlib.sha256(data).hexdigest()


def verify_commitment(data: bytes, commitment: str) -> None:
    """Refuses share bytes that do not hash to ``commitment`` (:class:`CommitmentMismatchError`)."""
    got = share_commitment(data)
    if got != commitment.lower():
        raise CommitmentMismatchError(f"the share hashes to {got}, not to its commitment {commitment}")


def sum_shares(shares: Iterable[Share], weights: Sequence[int] | None = None) -> Share:
    """One organisation's (weighted) sum of its shares of exactly the listed updates, as a :class:`Share` of the
    aggregate: all must be that organisation's shares (same org, index, K, scale and manifest).

    ``shares`` may be a generator: each share is added as it comes, so an organisation holds one share and the
    running sum, not N shares (at d = 10^6 and 50 members, 16 MB instead of 400 MB).
    """
    first: Share | None = None
    total: RingState = {}
    count = 0
    for share in shares:
        if weights is not None and count >= len(weights):
            raise ShareFormatError(f"more shares than the {len(weights)} weights")
        w = 1 if weights is None else _check_weight(weights[count])
        if first is None:
            first = share
            total = {name: np.zeros(np.shape(v), dtype=np.uint64) for name, v in sorted(share.values.items())}
        elif _identity(share) != _identity(first):
            raise ShareFormatError(
                f"cannot sum share {share.index} of {share.org!r} (scale {share.scale}) with share {first.index} of "
                f"{first.org!r} (scale {first.scale}): one organisation sums its own shares of one manifest"
            )
        _add_weighted(total, share.values, w)
        count += 1
    if first is None:
        raise ShareFormatError("a sum needs at least one share")
    if weights is not None and count != len(weights):
        raise ShareFormatError(f"{len(weights)} weights for {count} shares")
    return Share(first.org, first.index, first.k, first.scale, first.manifest_sha256, total)


def _identity(share: Share) -> tuple[str, int, int, int, str]:
    return share.org, share.index, share.k, share.scale, share.manifest_sha256


# --- keys and sealing -------------------------------------------------------------------------------------------


def generate_key() -> X25519PrivateKey:
    """A new X25519 key pair for one organisation's shares."""
    return X25519PrivateKey.generate()


def private_key_pem(key: X25519PrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with ``password`` if given."""
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def public_key_pem(key: X25519PublicKey | X25519PrivateKey) -> bytes:
    """SubjectPublicKeyInfo PEM of an organisation's share key (what it publishes)."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(pem: bytes, password: bytes | None = None) -> X25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password)
    except (ValueError, TypeError) as exc:
        raise SharesError(f"not a readable PEM private key: {exc}") from None
    if not isinstance(key, X25519PrivateKey):
        raise SharesError(f"share keys are X25519; this PEM holds a {type(key).__name__}")
    return key


def load_public_key(pem: bytes) -> X25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise SharesError(f"not a readable PEM public key: {exc}") from None
    if not isinstance(key, X25519PublicKey):
        raise SharesError(f"share keys are X25519; this PEM holds a {type(key).__name__}")
    return key


def key_id(key: X25519PublicKey | X25519PrivateKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key: which key a share was sealed to."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Binding:
    """What a sealed share is for; public (the ledger records it beside the commitment) and bound into HPKE."""

    org: str
    round: int
    participant: str
    index: int
    recipient_key: str

    def encoded(self) -> bytes:
        return _canonical(
            {
                "index": self.index,
                "org": self.org,
                "participant": self.participant,
                "recipient_key": self.recipient_key,
                "round": self.round,
                "suite": SUITE,
            }
        )

    @classmethod
    def parse(cls, data: bytes) -> Binding:
        try:
            raw = json.loads(data)
            if raw.get("suite") != SUITE:
                raise ValueError(f"suite {raw.get('suite')!r}")
            return cls(
                str(raw["org"]),
                int(raw["round"]),
                str(raw["participant"]),
                int(raw["index"]),
                str(raw["recipient_key"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ShareFormatError(f"the sealed share's binding is not valid: {exc}") from None


def seal_share(
    share_bytes: bytes, public_key: X25519PublicKey, *, org: str, round: int, participant: str, index: int
) -> bytes:
    """``FLSE``, version, 2-byte length, the clear :class:`Binding`, then HPKE(enc ‖ ciphertext) with the binding
    as ``info``: only ``org``'s private key opens it, and only for this round, participant and index."""
    binding = Binding(org, round, participant, index, key_id(public_key)).encoded()
    sealed = _SUITE.encrypt(share_bytes, public_key, info=_INFO_PREFIX + binding)
    return _SEALED_MAGIC + bytes([FORMAT_VERSION]) + struct.pack("<H", len(binding)) + binding + sealed


def binding_of(sealed: bytes) -> Binding:
    """The clear binding of a sealed share (whom it is for), readable without any key: what an auditor checks
    against the ledger; only the organisation's key proves the ciphertext under it."""
    if len(sealed) < 7 or not sealed.startswith(_SEALED_MAGIC) or sealed[4] != FORMAT_VERSION:
        raise ShareFormatError("not a sealed fedledger share (bad magic or version)")
    (length,) = struct.unpack_from("<H", sealed, 5)
    return Binding.parse(sealed[7 : 7 + length])


def open_share(
    sealed: bytes,
    private_key: X25519PrivateKey,
    *,
    org: str,
    round: int,
    participant: str,
    manifest: Manifest,
    index: int | None = None,
    commitment: str | None = None,
) -> tuple[Share, bytes]:
    """Opens a sealed share as organisation ``org`` and returns it with its bytes.

    Refuses, in this order: not a sealed share (:class:`ShareFormatError`); addressed to another organisation
    or key (:class:`WrongRecipientError`); bound to another round, participant or index
    (:class:`ShareBindingError`); does not decrypt under the binding the caller expects (:class:`TamperedShareError`);
    bytes that miss ``commitment`` (:class:`CommitmentMismatchError`); a share whose own header names another
    organisation or index than its binding — a member sealed one organisation's share to another's key
    (:class:`WrongRecipientError`); the wrong manifest (:class:`ShareFormatError`).
    """
    claimed = binding_of(sealed)
    (length,) = struct.unpack_from("<H", sealed, 5)
    mine = key_id(private_key)
    if claimed.org != org or claimed.recipient_key != mine:
        raise WrongRecipientError(
            f"the share is sealed to {claimed.org!r} (key {claimed.recipient_key}), not to {org!r} (key {mine})"
        )
    if claimed.round != round or claimed.participant != participant or index not in (None, claimed.index):
        raise ShareBindingError(
            f"the share is bound to round {claimed.round}, participant {claimed.participant!r}, index "
            f"{claimed.index}; expected round {round}, participant {participant!r}"
            + ("" if index is None else f", index {index}")
        )
    expected = Binding(org, round, participant, claimed.index, mine).encoded()
    try:
        data = _SUITE.decrypt(sealed[7 + length :], private_key, info=_INFO_PREFIX + expected)
    except InvalidTag:
        raise TamperedShareError(
            f"the share of {participant!r} for {org!r} in round {round} does not open: it was altered"
        ) from None
    if commitment is not None:
        verify_commitment(data, commitment)
    share = Share.from_bytes(data, manifest)
    if share.org != org or share.index != claimed.index:
        raise WrongRecipientError(
            f"the sealed share holds share {share.index} of {share.org!r}, but was sealed to {org!r} as share "
            f"{claimed.index}"
        )
    logger.debug("opened share %d/%d of %s for %s, round %d", share.index, share.k, participant, org, round)
    return share, data


@dataclass(frozen=True)
class SealedShare:
    """One organisation's share of one update as a member sends it: the commitment goes on chain."""

    org: str
    index: int
    commitment: str
    sealed: bytes


def share_update(
    state: Mapping[str, Any],
    recipients: Mapping[str, X25519PublicKey],
    *,
    round: int,
    participant: str,
    manifest: Manifest,
    scale: int = DEFAULT_SCALE,
    total_weight: int = TOTAL_WEIGHT,
) -> list[SealedShare]:
    """What a member does with its update: encode, split into one share per organisation (sorted by name, so the
    index of an organisation is the same for every member), commit and seal each to its organisation."""
    orgs = sorted(recipients)
    shares = make_shares(state, orgs, manifest=manifest, scale=scale, total_weight=total_weight)
    out = []
    for share in shares:
        data = share.to_bytes()
        sealed = seal_share(
            data, recipients[share.org], org=share.org, round=round, participant=participant, index=share.index
        )
        out.append(SealedShare(share.org, share.index, share_commitment(data), sealed))
    return out

"""Secret shares of an update (fedledger.shares): fixed point, exact sums, sealing, and every refusal."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fedledger import shares as sh
from fedledger.anomaly.features import SKETCH_BLOCKS, count_sketch, ring_sketch
from fedledger.chaincode.weights import WEIGHT_UNITS
from fedledger.tensors import manifest

ORGS = ("Org1MSP", "Org2MSP", "Org3MSP")
ROUND = 7
MEMBER = "Org2MSP:hospital-a"


def _update(seed: int = 0, scale: float = 0.01) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "layer.0.lora_A": (scale * rng.standard_normal((4, 64))).astype(np.float32),
        "layer.0.lora_B": (scale * rng.standard_normal((64, 4))).astype(np.float32),
        "score.weight": (scale * rng.standard_normal(10)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def keys() -> dict[str, object]:
    return {org: sh.generate_key() for org in ORGS}


def _publics(keys: dict) -> dict:
    return {org: key.public_key() for org, key in keys.items()}


def _open(sealed: sh.SealedShare | bytes, keys: dict, **overrides):
    """open_share as the sealed share's organisation (or ``org``) would call it; raw bytes are Org1MSP's."""
    data = sealed if isinstance(sealed, bytes) else sealed.sealed
    org = "Org1MSP" if isinstance(sealed, bytes) else sealed.org
    args = {"org": org, "round": ROUND, "participant": MEMBER, "manifest": manifest(_update()), **overrides}
    return sh.open_share(data, keys[args["org"]], **args)


# --- fixed point ------------------------------------------------------------------------------------------------


def test_fixed_point_round_trip_is_within_half_a_step():
    update = _update()
    back = sh.decode_fixed(sh.encode_fixed(update, scale=20), scale=20)
    for name, values in update.items():
        assert back[name].shape == values.shape
        assert np.abs(back[name] - values.astype(np.float64)).max() <= 2.0**-21
    assert any(np.abs(back[n] - update[n]).max() > 0 for n in update)  # scale 20 is coarser than float32 here


def test_sums_of_encoded_updates_decode_exactly_to_the_fixed_point_sum():
    n = 50
    updates = [_update(seed, scale=100.0) for seed in range(n)]
    rings = [sh.encode_fixed(u, total_weight=n) for u in updates]
    total = sh.combine(rings)
    for name in updates[0]:
        exact = sum(np.rint(u[name].astype(np.float64) * 2.0**sh.DEFAULT_SCALE).astype(np.int64) for u in updates)
        np.testing.assert_array_equal(total[name].view(np.int64), exact)
        decoded = sh.decode_fixed(total)[name]
        np.testing.assert_allclose(decoded, sum(u[name].astype(np.float64) for u in updates), rtol=0, atol=n * 2.0**-33)


@pytest.mark.parametrize("total_weight", [1, WEIGHT_UNITS])
def test_values_beyond_the_range_are_refused_and_the_bound_itself_is_accepted(total_weight):
    bound = sh.fixed_point_bound(sh.DEFAULT_SCALE, total_weight)
    assert bound == 2.0**62 / 2.0**sh.DEFAULT_SCALE / total_weight
    ok = sh.encode_fixed({"x": np.array([bound, -bound])}, total_weight=total_weight)
    np.testing.assert_allclose(sh.decode_fixed(ok)["x"], [bound, -bound], rtol=0, atol=2.0**-33)
    with pytest.raises(sh.FixedPointRangeError, match="'x' holds"):
        sh.encode_fixed({"x": np.array([0.0, np.nextafter(bound, np.inf)])}, total_weight=total_weight)


def test_the_default_range_admits_every_update_the_default_norm_rule_admits():
    from fedledger.chaincode.records import Rules

    assert sh.TOTAL_WEIGHT == WEIGHT_UNITS
    assert sh.fixed_point_bound(sh.DEFAULT_SCALE, sh.TOTAL_WEIGHT) >= Rules().max_update_norm


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    with pytest.raises(sh.FixedPointRangeError, match="NaN or Inf"):
        sh.encode_fixed({"x": np.array([0.0, bad])})


def test_a_wrapped_sum_would_decode_wrong_which_is_why_the_range_counts_the_total_weight():
    big = {"x": np.array([sh.fixed_point_bound(sh.DEFAULT_SCALE, 1)])}
    ring = sh.encode_fixed(big)
    wrapped = sh.decode_fixed(sh.weighted_sum([ring, ring, ring], [1, 1, 1]))["x"][0]
    assert wrapped != 3 * big["x"][0]  # three times 2^62 does not fit in 63 bits
    with pytest.raises(sh.FixedPointRangeError):
        sh.encode_fixed(big, total_weight=3)


# --- shares -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 5])
def test_shares_sum_to_the_encoded_update(k):
    ring = sh.encode_fixed(_update())
    parts = sh.split(ring, k)
    assert len(parts) == k
    total = sh.combine(parts)
    for name in ring:
        np.testing.assert_array_equal(total[name], ring[name])
        assert not any(np.array_equal(p[name], ring[name]) for p in parts)


@pytest.mark.parametrize("k", [0, 1])
def test_fewer_than_two_shares_are_refused(k):
    with pytest.raises(sh.ShareFormatError, match="K >= 2"):
        sh.split(sh.encode_fixed(_update()), k)
    with pytest.raises(sh.ShareFormatError, match="K >= 2"):
        sh.make_shares(_update(), ORGS[:k], manifest=manifest(_update()))


def test_a_share_header_claiming_one_share_is_refused():
    share = sh.make_shares(_update(), ORGS[:2], manifest=manifest(_update()))[0]
    forged = dataclasses.replace(share, k=1, index=0)
    with pytest.raises(sh.ShareFormatError, match="K >= 2"):
        sh.Share.from_bytes(forged.to_bytes(), manifest(_update()))


def _word_statistics(words: np.ndarray) -> tuple[float, float, np.ndarray]:
    unit = words.astype(np.float64) / 2.0**64
    counts = np.bincount(words.view(np.uint8), minlength=256)
    return float(unit.mean()), float(unit.var()), counts / counts.sum()


def test_every_single_share_is_uniform_whatever_the_update():
    """A zero update and a large structured one give shares with the same word distribution: uniform on Z_2^64.

    Bounds are ~10 standard errors wide for 2^17 words (no flakes), yet a share that leaked its update — the
    fixed-point values themselves, small numbers near 0 or 2^64 — would miss the variance by a factor 3 and have
    its high bytes all 0x00 or 0xff."""
    size = 1 << 17
    updates = {"zero": {"x": np.zeros(size)}, "large": {"x": np.linspace(-500.0, 500.0, size)}}
    for label, update in updates.items():
        for index, part in enumerate(sh.split(sh.encode_fixed(update), 3)):
            mean, variance, bytes_histogram = _word_statistics(part["x"])
            assert abs(mean - 0.5) < 0.008, (label, index, mean)
            assert abs(variance - 1 / 12) < 0.004, (label, index, variance)
            assert np.abs(bytes_histogram - 1 / 256).max() < 0.0008, (label, index)
    leak = sh.encode_fixed(updates["large"])["x"]
    assert abs(_word_statistics(leak)[1] - 1 / 12) > 0.1  # the check above would catch the plain encoding


def test_share_bytes_round_trip_with_their_header():
    update = _update()
    m = manifest(update)
    shares = sh.make_shares(update, ORGS, manifest=m, scale=24)
    for share in shares:
        data = share.to_bytes()
        assert data.startswith(b"FLSH\x01")
        back = sh.Share.from_bytes(data, m)
        assert (back.org, back.index, back.k, back.scale) == (share.org, share.index, 3, 24)
        assert back.manifest_sha256 == sh.manifest_digest(m)
        for name in update:
            np.testing.assert_array_equal(back.values[name], share.values[name])
    total = sh.combine([sh.Share.from_bytes(s.to_bytes(), m).values for s in shares])
    for name, values in sh.decode_fixed(total, scale=24).items():
        assert np.abs(values - update[name]).max() <= 2.0**-25


def test_share_bytes_for_another_manifest_or_truncated_are_refused():
    update = _update()
    data = sh.make_shares(update, ORGS[:2], manifest=manifest(update))[0].to_bytes()
    other = {**update, "score.weight": np.zeros(11, np.float32)}
    with pytest.raises(sh.ShareFormatError, match="another manifest"):
        sh.Share.from_bytes(data, manifest(other))
    with pytest.raises(sh.ShareFormatError, match="bytes of words"):
        sh.Share.from_bytes(data[:-8], manifest(update))
    with pytest.raises(sh.ShareFormatError, match="not a fedledger share"):
        sh.Share.from_bytes(b"FLSX" + data[4:], manifest(update))


def test_an_update_that_is_not_the_manifests_is_refused():
    update = _update()
    with pytest.raises(sh.ShareFormatError, match="manifest"):
        sh.make_shares({"other": np.zeros(3)}, ORGS, manifest=manifest(update))


def test_commitments_bind_the_share_bytes():
    data = sh.make_shares(_update(), ORGS[:2], manifest=manifest(_update()))[1].to_bytes()
    commitment = sh.share_commitment(data)
    assert len(commitment) == 64
    sh.verify_commitment(data, commitment)
    altered = bytearray(data)
    altered[-1] ^= 1
    with pytest.raises(sh.CommitmentMismatchError, match="not to its commitment"):
        sh.verify_commitment(bytes(altered), commitment)


# --- sealing ----------------------------------------------------------------------------------------------------


def test_each_organisation_opens_its_own_share_and_the_shares_rebuild_the_update(keys):
    update = _update()
    sealed = sh.share_update(update, _publics(keys), round=ROUND, participant=MEMBER, manifest=manifest(update))
    assert [s.org for s in sealed] == sorted(ORGS) and [s.index for s in sealed] == [0, 1, 2]
    opened = [_open(s, keys, commitment=s.commitment) for s in sealed]
    for (share, data), s in zip(opened, sealed, strict=True):
        assert share.org == s.org and sh.share_commitment(data) == s.commitment
        assert s.commitment not in s.sealed.hex()  # the plaintext is not readable from the sealed bytes
    back = sh.decode_fixed(sh.combine([share.values for share, _ in opened]))
    for name in update:
        assert np.abs(back[name] - update[name]).max() <= 2.0**-33


@pytest.fixture(scope="module")
def sealed(keys) -> list[sh.SealedShare]:
    update = _update()
    return sh.share_update(update, _publics(keys), round=ROUND, participant=MEMBER, manifest=manifest(update))


def _edit_binding(sealed: bytes, **changes) -> bytes:
    (length,) = struct.unpack_from("<H", sealed, 5)
    binding = dataclasses.replace(sh.Binding.parse(sealed[7 : 7 + length]), **changes).encoded()
    return sealed[:5] + struct.pack("<H", len(binding)) + binding + sealed[7 + length :]


def _hpke_start(sealed: bytes) -> int:
    """Where HPKE's encapsulated key starts: after magic, version, the binding's length and the binding."""
    return 7 + struct.unpack_from("<H", sealed, 5)[0]


def _flip(data: bytes, position: int) -> bytes:
    altered = bytearray(data)
    altered[position] ^= 0x01
    return bytes(altered)


def _refusals(sealed: list[sh.SealedShare], keys: dict) -> list[tuple[str, object, type[Exception], str]]:
    """(case, thunk, error, message) for every way a sealed share is refused."""
    share = sealed[0]  # Org1MSP's
    key_b = sh.key_id(keys["Org2MSP"])
    forged = sh.make_shares(_update(), ORGS, manifest=manifest(_update()))[0]  # share 0, header says Org1MSP
    misaddressed = sh.seal_share(
        forged.to_bytes(), keys["Org2MSP"].public_key(), org="Org2MSP", round=ROUND, participant=MEMBER, index=0
    )
    return [
        ("Org1's share opened by Org2", lambda: _open(share, keys, org="Org2MSP"), sh.WrongRecipientError, "sealed to"),
        (
            "relabelled to Org2 and its key",
            lambda: _open(_edit_binding(share.sealed, org="Org2MSP", recipient_key=key_b), keys, org="Org2MSP"),
            sh.TamperedShareError,
            "altered",
        ),
        ("another round", lambda: _open(share, keys, round=ROUND + 1), sh.ShareBindingError, "round 7"),
        ("another participant", lambda: _open(share, keys, participant="Org3MSP:x"), sh.ShareBindingError, "Org2MSP"),
        ("another index", lambda: _open(share, keys, index=2), sh.ShareBindingError, "index 2"),
        (
            "binding edited to the next round",
            lambda: _open(_edit_binding(share.sealed, round=ROUND + 1), keys, round=ROUND + 1),
            sh.TamperedShareError,
            "altered",
        ),
        (
            "ciphertext bit flipped",
            lambda: _open(_flip(share.sealed, len(share.sealed) - 100), keys),
            sh.TamperedShareError,
            "altered",
        ),
        (
            "encapsulated key bit flipped",
            lambda: _open(_flip(share.sealed, _hpke_start(share.sealed) + 5), keys),
            sh.TamperedShareError,
            "altered",
        ),
        (
            "wrong commitment",
            lambda: _open(share, keys, commitment=sealed[1].commitment),
            sh.CommitmentMismatchError,
            "commitment",
        ),
        (
            "Org1's share sealed to Org2 by a member",
            lambda: _open(misaddressed, keys, org="Org2MSP"),
            sh.WrongRecipientError,
            "holds share 0 of 'Org1MSP'",
        ),
        (
            "not a sealed share",
            lambda: _open(b"nonsense", keys),
            sh.ShareFormatError,
            "not a sealed",
        ),
        (
            "wrong manifest",
            lambda: _open(share, keys, manifest=manifest({"x": np.zeros(3, np.float32)})),
            sh.ShareFormatError,
            "another manifest",
        ),
    ]


def test_every_refusal_of_a_sealed_share_has_its_typed_error(sealed, keys):
    for case, thunk, error, message in _refusals(sealed, keys):
        with pytest.raises(error, match=message):
            thunk()  # type: ignore[operator]
        assert issubclass(error, sh.SharesError), case


def test_the_right_opening_succeeds_so_the_refusals_are_not_vacuous(sealed, keys):
    share, _ = _open(sealed[0], keys, index=0, commitment=sealed[0].commitment)
    assert share.org == "Org1MSP"


def test_share_keys_round_trip_through_pem_and_other_key_types_are_refused():
    key = sh.generate_key()
    back = sh.load_private_key(sh.private_key_pem(key, b"pass"), b"pass")
    assert sh.key_id(back) == sh.key_id(key) == sh.key_id(sh.load_public_key(sh.public_key_pem(key)))
    assert sh.key_id(sh.load_private_key(sh.private_key_pem(key))) == sh.key_id(key)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    from cryptography.hazmat.primitives import serialization

    ec_pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(sh.SharesError, match="X25519"):
        sh.load_public_key(ec_pem)
    with pytest.raises(sh.SharesError, match="not a readable"):
        sh.load_public_key(b"garbage")


# --- aggregation ------------------------------------------------------------------------------------------------


def test_organisation_weighted_sums_reproduce_the_plaintext_weighted_mean():
    """Each organisation weights its shares of the accepted updates by their contract weights (integers summing
    to WEIGHT_UNITS); the sum over organisations, decoded over WEIGHT_UNITS, is FedAvg's weighted mean."""
    updates = [_update(seed) for seed in range(6)]
    weights = [400_000, 250_000, 150_000, 100_000, 60_000, 40_000]
    assert sum(weights) == WEIGHT_UNITS
    m = manifest(updates[0])
    per_member = [sh.make_shares(u, ORGS, manifest=m) for u in updates]
    org_sums = [sh.sum_shares([shares[i] for shares in per_member], weights) for i in range(len(ORGS))]
    assert [s.org for s in org_sums] == list(ORGS)
    mean = sh.decode_fixed(sh.combine([s.values for s in org_sums]), divisor=WEIGHT_UNITS)
    for name in m:
        plain = sum(w * u[name].astype(np.float64) for w, u in zip(weights, updates, strict=True)) / WEIGHT_UNITS
        assert np.abs(mean[name] - plain).max() <= 2.0**-33 * 1.01


def test_a_sum_leaves_out_what_is_not_listed():
    updates = [_update(seed) for seed in range(3)]
    m = manifest(updates[0])
    per_member = [sh.make_shares(u, ORGS[:2], manifest=m) for u in updates]
    accepted = [0, 2]
    sums = [sh.sum_shares([per_member[j][i] for j in accepted]) for i in range(2)]
    total = sh.decode_fixed(sh.combine([s.values for s in sums]))
    for name in m:
        assert np.abs(total[name] - updates[0][name] - updates[2][name]).max() <= 2 * 2.0**-33


@pytest.mark.parametrize(
    ("weights", "message"),
    [([1], "1 weights for 2"), ([1, -1], "integers"), ([1, True], "integers"), ([1, 0.5], "integers")],
)
def test_bad_weights_are_refused(weights, message):
    ring = sh.encode_fixed(_update())
    with pytest.raises(sh.ShareFormatError, match=message):
        sh.weighted_sum([ring, ring], weights)


def test_an_organisation_sums_shares_as_they_come_and_the_weights_must_match_them():
    updates = [_update(seed) for seed in range(3)]
    m = manifest(updates[0])
    per_member = [sh.make_shares(u, ORGS[:2], manifest=m) for u in updates]
    streamed = sh.sum_shares((shares[0] for shares in per_member), [3, 2, 1])
    listed = sh.sum_shares([shares[0] for shares in per_member], [3, 2, 1])
    for name in m:
        np.testing.assert_array_equal(streamed.values[name], listed.values[name])
    with pytest.raises(sh.ShareFormatError, match="2 weights for 3 shares|more shares than the 2 weights"):
        sh.sum_shares((shares[0] for shares in per_member), [1, 1])
    with pytest.raises(sh.ShareFormatError, match="4 weights for 3 shares"):
        sh.sum_shares([shares[0] for shares in per_member], [1, 1, 1, 1])


def test_one_organisation_cannot_sum_another_organisations_shares():
    m = manifest(_update())
    a, b = sh.make_shares(_update(), ORGS[:2], manifest=m)
    with pytest.raises(sh.ShareFormatError, match="one organisation sums its own shares"):
        sh.sum_shares([a, b])


# --- sketches ---------------------------------------------------------------------------------------------------


def test_the_organisations_ring_sketches_add_up_to_the_updates_count_sketch():
    """Each organisation sketches only its share; the parts add up (mod 2^64) to the update's count sketch within
    the fixed-point error (at most 2^-33 per coordinate, so bucket size times 2^-33 per bucket)."""
    update = _update(3)
    dim = 64
    shares = sh.make_shares(update, ORGS, manifest=manifest(update))
    parts = [ring_sketch(s.values, dim, seed=11, blocks=SKETCH_BLOCKS) for s in shares]
    total = sh.decode_fixed({"sketch": sh.combine([{"sketch": p} for p in parts])["sketch"]})["sketch"]
    expected = count_sketch(update, dim, seed=11, blocks=SKETCH_BLOCKS)
    size = sum(v.size for v in update.values())
    np.testing.assert_allclose(total, expected, rtol=0, atol=size * 2.0**-33)
    assert np.abs(total - expected).max() > 0 or size == 0  # really fixed point, not a float copy
    one = sh.decode_fixed({"s": parts[0]})["s"]
    assert np.abs(one - expected).max() > 1.0  # one share's sketch is noise, nowhere near the update's
